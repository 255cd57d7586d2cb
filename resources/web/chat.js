// The chat page: keeps the conversation in memory and streams answers from
// /v1/chat/completions (server-sent events read through fetch's ReadableStream).
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = [];  // {role, content} sent with every request
let controller = null;    // AbortController of the answer being streamed
let modelId = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("log").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return `${response.status}: ${body.error.message}`;
  } catch (e) { /* not JSON: fall through */ }
  return `HTTP ${response.status}`;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    if (!r.ok) { showError("Could not list models: " + (await errorText(r))); return; }
    const body = await r.json();
    modelId = body.data.length ? body.data[0].id : null;
    $("model-name").textContent = modelId || "";
    showError("");
  } catch (e) {
    showError("Could not reach the server: " + e.message);
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

// Reads "data: ..." events from the response body and calls onEvent with each parsed JSON.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  showError("");
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  conversation.push({ role: "user", content: text });
  messages.push(...conversation);
  addMessage("user", text);
  const bubble = addMessage("assistant", "");
  bubble.classList.add("streaming");
  let answer = "";
  let usage = null, finish = null, failed = false, pieces = 0;
  controller = new AbortController();
  setBusy(true);
  const request = {
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: Number($("temperature").value),
    max_tokens: Number($("max-tokens").value),
  };
  if (modelId) request.model = modelId;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(request), signal: controller.signal,
    });
    if (!r.ok) throw new Error(await errorText(r));
    await readEvents(r, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        if (choice.delta && choice.delta.content) {
          answer += choice.delta.content;
          bubble.textContent = answer;
          bubble.dataset.pieces = ++pieces;  // how many streamed updates built the answer
          bubble.scrollIntoView({ block: "end" });
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    });
  } catch (e) {
    if (e.name === "AbortError") finish = "stopped";
    else { failed = true; showError(e.message); }
  } finally {
    controller = null;
    setBusy(false);
    bubble.classList.remove("streaming");
    bubble.textContent = answer;
    const meta = document.createElement("span");
    meta.className = "meta";
    const parts = [];
    if (finish) parts.push(finish);
    if (usage) parts.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
    meta.textContent = parts.join(" · ");
    bubble.appendChild(meta);
    // A failed request leaves no turn behind; a stopped one keeps what was shown.
    if (failed && !answer) conversation.pop();
    else conversation.push({ role: "assistant", content: answer });
  }
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("input").value;
  if (!text.trim() || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("reset").addEventListener("click", () => {
  if (controller) controller.abort();
  conversation.length = 0;
  $("log").textContent = "";
  showError("");
});
$("api-key").addEventListener("change", loadModel);
loadModel();
