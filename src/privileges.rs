//! Holding only the power in use. Once the sources, the random device and
//! the kernel files are open, the daemon drops every capability its sinks do
//! not need, optionally becomes another user (rngd's `-D`, done right: the
//! needed capability survives the switch), and sets `no_new_privs`.
//!
//! Capabilities are per thread: this runs before any thread but the signal
//! handler's is started, and the signal thread holds nothing it could use.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

/// What the configured features need after start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The kernel sink: RNDADDENTROPY with credit and RNDRESEEDCRNG.
    pub sys_admin: bool,
    /// Reopening root-only sources after switching to another user.
    pub reopen_as_other_user: bool,
}

impl Needs {
    pub fn capabilities(&self, switching_user: bool) -> CapsHashSet {
        let mut set = CapsHashSet::new();
        if self.sys_admin {
            set.insert(Capability::CAP_SYS_ADMIN);
        }
        if switching_user && self.reopen_as_other_user {
            set.insert(Capability::CAP_DAC_READ_SEARCH);
        }
        set
    }
}

/// A `--user UID[:GID]` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl FromStr for User {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let number = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("`{s}` is not UID[:GID] (numbers, such as 65534:65534)"))
        };
        match s.split_once(':') {
            Some((u, g)) => Ok(Self {
                uid: number(u)?,
                gid: number(g)?,
            }),
            None => {
                let uid = number(s)?;
                Ok(Self { uid, gid: uid })
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot {what}: {source}")]
    Caps {
        what: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("cannot {what}: {source}")]
    Sys {
        what: &'static str,
        source: nix::Error,
    },
    #[error("--user needs the daemon to start as root")]
    NotRoot,
}

/// Drops to `needs` (and to `user`, if given) for good.
pub fn drop_privileges(needs: Needs, user: Option<User>) -> Result<CapsHashSet, PrivilegeError> {
    let keep = needs.capabilities(user.is_some());
    let caps_err = |what| move |source| PrivilegeError::Caps { what, source };
    let sys_err = |what| move |source| PrivilegeError::Sys { what, source };
    let effective = caps::read(None, CapSet::Effective).map_err(caps_err("read capabilities"))?;
    // The bounding set bounds what any later exec could regain.
    if effective.contains(&Capability::CAP_SETPCAP) {
        for cap in caps::all().difference(&keep) {
            caps::drop(None, CapSet::Bounding, *cap)
                .map_err(caps_err("drop a bounding capability"))?;
        }
    }
    if let Some(user) = user {
        if !nix::unistd::geteuid().is_root() {
            return Err(PrivilegeError::NotRoot);
        }
        // Keep the permitted set across setuid, then narrow it below.
        nix::sys::prctl::set_keepcaps(true).map_err(sys_err("keep capabilities across setuid"))?;
        let gid = nix::unistd::Gid::from_raw(user.gid);
        nix::unistd::setgroups(&[gid]).map_err(sys_err("set supplementary groups"))?;
        nix::unistd::setgid(gid).map_err(sys_err("set the group"))?;
        nix::unistd::setuid(nix::unistd::Uid::from_raw(user.uid))
            .map_err(sys_err("set the user"))?;
        nix::sys::prctl::set_keepcaps(false).map_err(sys_err("clear keep-capabilities"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clear ambient capabilities"))?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())
        .map_err(caps_err("clear inheritable capabilities"))?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(caps_err("read capabilities"))?;
    let kept: CapsHashSet = keep.intersection(&permitted).copied().collect();
    caps::set(None, CapSet::Effective, &kept).map_err(caps_err("set effective capabilities"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(caps_err("set permitted capabilities"))?;
    nix::sys::prctl::set_no_new_privs().map_err(sys_err("set no_new_privs"))?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse() {
        assert_eq!(
            "65534".parse(),
            Ok(User {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(
            "1000:100".parse(),
            Ok(User {
                uid: 1000,
                gid: 100
            })
        );
        assert!("nobody".parse::<User>().is_err());
        assert!("1:x".parse::<User>().is_err());
    }

    #[test]
    fn needs_map_to_the_minimal_set() {
        assert!(Needs::default().capabilities(true).is_empty());
        let kernel = Needs {
            sys_admin: true,
            reopen_as_other_user: true,
        };
        assert_eq!(
            kernel.capabilities(false),
            [Capability::CAP_SYS_ADMIN].into_iter().collect()
        );
        assert_eq!(kernel.capabilities(true).len(), 2);
    }
}
