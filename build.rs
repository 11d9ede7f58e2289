//! Stamps the binary with what `random_refresher_build_info` reports, so that
//! a fleet can tell which build each node runs: the git commit and the target
//! triple. The commit is `RANDOM_REFRESHER_GIT_COMMIT` where that is set (a
//! Docker build, whose context holds no `.git`, passes it as a build
//! argument), else `git rev-parse HEAD`, else "unknown".
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=RANDOM_REFRESHER_GIT_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let given = std::env::var("RANDOM_REFRESHER_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let commit = given.or_else(|| git(&["rev-parse", "HEAD"]));
    // A new commit moves the branch's ref (or HEAD itself when detached):
    // watch those files, and only ones that exist, which cargo would
    // otherwise take as changed on every build.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
        watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
        for name in watched {
            let path = Path::new(&dir).join(name);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!(
        "cargo:rustc-env=RANDOM_REFRESHER_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rustc-env=RANDOM_REFRESHER_TARGET={target}");
}
