// Reads a JSON array of Kubernetes objects on stdin and prints one JSON line per object:
// {kind, name, result: "valid" | "invalid" | "no-schema", errors}. Istio, Gateway API and
// Envoy Gateway kinds are checked with the JSON-schema validators @kubernetes-models
// generates from those projects' CRDs (structure, types, enums, patterns, required fields; not their CEL rules).
const PACKAGES = {
  "extensions.istio.io": "@kubernetes-models/istio",
  "networking.istio.io": "@kubernetes-models/istio",
  "security.istio.io": "@kubernetes-models/istio",
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
  "gateway.envoyproxy.io": "@kubernetes-models/envoy-gateway",
};

async function check(object) {
  const [group, version] = object.apiVersion.split("/");
  const name = object.metadata?.name;
  const pkg = PACKAGES[group];
  if (!pkg || !version) return { kind: object.kind, name, result: "no-schema" };
  let model;
  try {
    model = await import(`${pkg}/${group}/${version}/${object.kind}`);
  } catch {
    return { kind: object.kind, name, result: "no-schema" };
  }
  try {
    new model[object.kind](object).validate();
    return { kind: object.kind, name, result: "valid" };
  } catch (error) {
    return { kind: object.kind, name, result: "invalid", errors: String(error.message ?? error) };
  }
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
for (const object of JSON.parse(input)) console.log(JSON.stringify(await check(object)));
