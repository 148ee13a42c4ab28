// Build a repository with @jupyterhub/binderhub-client, as jupyterhub-fancy-profiles does.
// Usage: node build.mjs BUILD_ENDPOINT_URL PROVIDER_SPEC API_TOKEN [launch [QUERY]]
// Prints each event the client yields as one JSON line. With "launch" the client
// asks for a launch (no build_only) and, after `ready`, prints the URL it would
// open for the launch link's QUERY (e.g. "urlpath=lab"): {"redirect": URL}.
globalThis.window = globalThis;
globalThis.document = {
  hidden: false,
  cookie: "",
  addEventListener() {},
  removeEventListener() {},
};

const { BinderRepository } = await import("@jupyterhub/binderhub-client/client.js");
const { LaunchSpec } = await import("@jupyterhub/binderhub-client/spec.js");

const [endpoint, spec, apiToken, mode, query] = process.argv.slice(2);
const launch = mode === "launch";
const repo = new BinderRepository(spec, new URL(endpoint), { apiToken, buildOnly: !launch });
for await (const event of repo.fetch()) {
  console.log(JSON.stringify(event));
  if (event.phase === "ready" || event.phase === "failed") {
    repo.close();
    if (launch && event.phase === "ready") {
      const launchSpec = LaunchSpec.fromSearchParams(new URLSearchParams(query || ""));
      const redirect = launchSpec.getJupyterServerRedirectUrl(new URL(event.url), event.token);
      console.log(JSON.stringify({ redirect: redirect.href }));
    }
    break;
  }
}
