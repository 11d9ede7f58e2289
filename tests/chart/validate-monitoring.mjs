// Validates Prometheus Operator objects (ServiceMonitor, PodMonitor,
// PrometheusRule) against the operator's schemas, offline, with
// @kubernetes-models/prometheus-operator. Reads a JSON array of objects on
// stdin; prints one line per invalid object and exits 1 if any was invalid.
// The package is an ES module; RR_NPM_TOOLS names the folder it is installed in.
import { pathToFileURL } from "node:url";
import path from "node:path";

const base = path.join(process.env.RR_NPM_TOOLS, "node_modules", "@kubernetes-models", "prometheus-operator", "monitoring.coreos.com", "v1");
const load = async (name) => (await import(pathToFileURL(path.join(base, `${name}.js`)).href))[name];
const models = {
  ServiceMonitor: await load("ServiceMonitor"),
  PodMonitor: await load("PodMonitor"),
  PrometheusRule: await load("PrometheusRule"),
};

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  let bad = 0;
  for (const obj of JSON.parse(input)) {
    const Model = models[obj.kind];
    if (!Model) {
      console.log(`${obj.kind}: no model`);
      bad++;
      continue;
    }
    try {
      new Model(obj).validate();
      console.log(`${obj.kind}/${obj.metadata.name}: valid`);
    } catch (e) {
      console.log(`${obj.kind}/${obj.metadata && obj.metadata.name}: ${e.message}`);
      bad++;
    }
  }
  process.exit(bad ? 1 : 0);
});
