// A log view that takes thousands of lines without freezing: lines are queued
// and appended in batches, once per animation frame.
import { appendAnsi, newAnsiState } from "./ansi.js";

const PER_FRAME = 2000;

export class LogView {
  constructor(element) {
    this.element = element;
    this.pending = [];
    this.scheduled = false;
    this.ansi = newAnsiState();
    this.waiting = [];
  }

  clear() {
    this.pending = [];
    this.ansi = newAnsiState();
    this.element.replaceChildren();
  }

  append(message) {
    this.pending.push(message.endsWith("\n") ? message.slice(0, -1) : message);
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => this.flush());
    }
  }

  flush() {
    this.scheduled = false;
    const el = this.element;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    const batch = this.pending.splice(0, PER_FRAME);
    const fragment = document.createDocumentFragment();
    for (const text of batch) {
      const line = document.createElement("div");
      line.className = "log-line";
      appendAnsi(line, text, this.ansi);
      fragment.appendChild(line);
    }
    el.appendChild(fragment);
    if (atBottom) el.scrollTop = el.scrollHeight;
    el.dataset.lines = String(el.childElementCount);
    if (this.pending.length) {
      this.scheduled = true;
      requestAnimationFrame(() => this.flush());
    } else {
      for (const resolve of this.waiting.splice(0)) resolve();
    }
  }

  // Resolves once every line appended so far is on screen.
  shown() {
    if (!this.scheduled && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}
