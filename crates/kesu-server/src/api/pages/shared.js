// Shared by kesu's console pages (put in at each page's SHARED mark by src/api/pages.rs).

// A text with its flag hits as <mark> elements. Offsets are Unicode code
// points; JS strings index UTF-16 units, hence Array.from. Overlapping hits
// after the first are skipped; negated hits get the class `negated`.
function highlighted(text, hits) {
  const chars = Array.from(text), frag = document.createDocumentFragment();
  let at = 0;
  for (const h of (hits || []).slice().sort((a, b) => a.start - b.start)) {
    if (h.start < at) continue;
    frag.append(chars.slice(at, h.start).join(""));
    const m = document.createElement("mark");
    m.className = "hit" + (h.negated ? " negated" : "");
    m.title = h.flag + " (severity " + h.severity + (h.negated ? ", negated" : "") + ")";
    m.dataset.flag = h.flag;
    m.textContent = chars.slice(h.start, h.end).join("");
    frag.append(m);
    at = h.end;
  }
  frag.append(chars.slice(at).join(""));
  return frag;
}

// The API key is never kept by the page or in a cookie: it is exchanged once
// for a console session (POST /v1/session with the key in Authorization),
// whose cookie (HttpOnly, SameSite=Strict, Path=/v1) the browser then sends
// with fetches, EventSource streams and download links. Resolves to the
// session ({name, roles, expires_at, ttl_secs}); rejects with kesu's message.
async function useKey(k) {
  document.cookie = "kesu_key=; path=/; max-age=0; SameSite=Strict"; // left by an older console
  const r = await fetch("/v1/session", { method: "POST", headers: { authorization: "Bearer " + k } });
  if (!r.ok) {
    let msg = "the key was refused (" + r.status + ")";
    try { const e = await r.json(); msg = e.error.code + ": " + e.error.message; } catch (_) {}
    throw new Error(msg);
  }
  return r.json();
}

// Log out: end the console session (DELETE /v1/session clears its cookie).
async function endSession() { await fetch("/v1/session", { method: "DELETE" }); }
