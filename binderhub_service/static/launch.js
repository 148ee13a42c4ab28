// The launch page: follow the build-and-launch event stream, show its log,
// then open the started server. Everything stays on this origin.
import { LogView } from "./log.js";

const $ = (id) => document.getElementById(id);
const body = document.body;
const log = new LogView($("log"));

function xsrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : null;
}

function streamUrl(replace) {
  const url = new URL(body.dataset.stream, new URL(body.dataset.base, location.href));
  const token = xsrfToken();
  if (token) url.searchParams.set("_xsrf", token);
  if (replace) url.searchParams.set("replace", "1");
  return url;
}

// The server's page to open: the path of the server's URL on this origin, never another.
function target(serverUrl) {
  const server = new URL(serverUrl, location.href);
  const root = server.pathname.endsWith("/") ? server.pathname : `${server.pathname}/`;
  return new URL(root + body.dataset.path, location.origin);
}

function finish(message) {
  $("phase").textContent = "failed";
  $("error").textContent = message;
  $("log").dataset.done = "1";
}

function follow(replace) {
  $("running").hidden = true;
  $("error").textContent = "";
  $("log").dataset.done = "0";
  // EventSource resumes with Last-Event-ID by itself when the connection drops.
  const source = new EventSource(streamUrl(replace));
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.phase) $("phase").textContent = event.phase;
    if (event.message) log.append(event.message);
    if (event.phase === "ready") {
      source.close();
      $("log").dataset.done = "1";
      location.assign(target(event.url).href);
    } else if (event.phase === "failed") {
      source.close();
      finish(event.message || "The launch failed.");
      if (event.server_url) {
        $("open-running").href = new URL(target(event.server_url).pathname, location.origin).href;
        $("running").hidden = false;
      }
    }
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) finish("The connection to the service was lost.");
  };
}

$("replace-button").addEventListener("click", () => follow(true));
if (body.dataset.stream) follow(false);
else $("log").dataset.done = "1";
