// The service's REST API and event streams, same origin only; cookie
// requests carry the XSRF token.

function xsrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : null;
}

function headers(extra = {}) {
  const all = { Accept: "application/json", ...extra };
  const token = xsrfToken();
  if (token) all["X-XSRFToken"] = token;
  return all;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function call(method, path, body) {
  const init = { method, headers: headers(), credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.message) || `HTTP ${response.status}`);
  }
  return data;
}

// Read a build's event stream from after `lastId`; `onEvent(id, data)` for each
// event. Resolves once a final event came (or `signal` aborts); reconnects
// with the last id seen when the connection drops.
export async function streamEvents(buildId, lastId, onEvent, signal) {
  let last = lastId;
  let ended = false;
  for (;;) {
    let final = false;
    try {
      const response = await fetch(`api/v1/builds/${encodeURIComponent(buildId)}/events`, {
        headers: headers({ Accept: "text/event-stream", "Last-Event-ID": String(last) }),
        credentials: "same-origin",
        signal,
      });
      if (!response.ok || !response.body) {
        throw new ApiError(response.status, `The event stream answered ${response.status}.`);
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let id = null;
          const data = [];
          for (const line of frame.split("\n")) {
            if (line.startsWith("id:")) id = Number(line.slice(3).trim());
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (!data.length) continue;
          const event = JSON.parse(data.join("\n"));
          if (id !== null) last = id;
          onEvent(last, event);
          if (event.phase === "ready" || event.phase === "failed") final = true;
        }
      }
    } catch (error) {
      if (signal && signal.aborted) return last;
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) throw error;
    }
    if (final || (signal && signal.aborted)) return last;
    const record = await call("GET", `api/v1/builds/${encodeURIComponent(buildId)}`);
    if (!["queued", "running"].includes(record.state)) {
      // Ended without a final event here: read the rest of the stored log once more.
      if (ended) return last;
      ended = true;
      continue;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
