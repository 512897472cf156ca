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

// The API key: kept in a SameSite=Strict cookie, so that fetches, EventSource
// streams and download links carry it.
function useKey(k) { document.cookie = "kesu_key=" + encodeURIComponent(k) + "; path=/; SameSite=Strict"; }
