// Build a repository with @jupyterhub/binderhub-client, as jupyterhub-fancy-profiles does.
// Usage: node build.mjs BUILD_ENDPOINT_URL PROVIDER_SPEC API_TOKEN
// Prints each event the client yields as one JSON line.
globalThis.window = globalThis;
globalThis.document = {
  hidden: false,
  cookie: "",
  addEventListener() {},
  removeEventListener() {},
};

const { BinderRepository } = await import("@jupyterhub/binderhub-client/client.js");

const [endpoint, spec, apiToken] = process.argv.slice(2);
const repo = new BinderRepository(spec, new URL(endpoint), { apiToken, buildOnly: true });
for await (const event of repo.fetch()) {
  console.log(JSON.stringify(event));
  if (event.phase === "ready" || event.phase === "failed") {
    repo.close();
    break;
  }
}
