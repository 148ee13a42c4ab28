// ANSI SGR colour codes to DOM nodes. Text only ever goes into text nodes.
// The service replaces control characters (ESC too) with U+FFFD before it
// relays a line, so an escape sequence arrives as "\uFFFD[1;31m".

const ESCAPE = /[\x1b\ufffd]\[([0-9;]*)([A-Za-z])/g;

function applyCodes(state, params) {
  const codes = params === "" ? [0] : params.split(";").map(Number);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) { state.fg = null; state.bg = null; state.bold = false; }
    else if (c === 1) state.bold = true;
    else if (c === 22) state.bold = false;
    else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) state.fg = c;
    else if (c === 39) state.fg = null;
    else if ((c >= 40 && c <= 47) || (c >= 100 && c <= 107)) state.bg = c;
    else if (c === 49) state.bg = null;
    else if ((c === 38 || c === 48) && codes[i + 1] === 5) i += 2;
    else if ((c === 38 || c === 48) && codes[i + 1] === 2) i += 4;
  }
}

function classes(state) {
  const list = [];
  if (state.fg !== null) list.push(`ansi-${state.fg}`);
  if (state.bg !== null) list.push(`ansi-${state.bg}`);
  if (state.bold) list.push("ansi-bold");
  return list.join(" ");
}

// Append `text` (which may hold escape codes) to `parent`; `state` carries across lines.
export function appendAnsi(parent, text, state) {
  let last = 0;
  const emit = (chunk) => {
    if (!chunk) return;
    const names = classes(state);
    if (!names) { parent.appendChild(document.createTextNode(chunk)); return; }
    const span = document.createElement("span");
    span.className = names;
    span.textContent = chunk;
    parent.appendChild(span);
  };
  for (const match of text.matchAll(ESCAPE)) {
    emit(text.slice(last, match.index));
    if (match[2] === "m") applyCodes(state, match[1]);
    last = match.index + match[0].length;
  }
  emit(text.slice(last));
}

export function newAnsiState() {
  return { fg: null, bg: null, bold: false };
}
