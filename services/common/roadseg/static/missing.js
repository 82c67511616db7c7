// Keyboard review of missing-road candidates (labeler service); a file, not inline, for the Content-Security-Policy.
// One key per decision clicks the focused card's button; once htmx has swapped the card in, focus moves on.
function cards() { return Array.from(document.querySelectorAll("#tiles .candidate")); }
function focusAt(i) { const c = cards(); if (c.length) c[Math.max(0, Math.min(i, c.length - 1))].focus(); }
let current = 0, target = null;
document.addEventListener("focusin", (e) => { const i = cards().indexOf(e.target.closest(".candidate")); if (i >= 0) current = i; });
document.body.addEventListener("htmx:afterSettle", () => {
  const el = target && document.getElementById(target);
  target = null;
  if (el) el.focus();
});
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.target.tagName === "INPUT") return;
  const action = {a: "accept", r: "reject", s: "skip", u: "clear"}[e.key];
  const c = cards();
  const link = {n: "next-page", p: "prev-page"}[e.key];
  if (action && c[current] && c[current].querySelector(".do-" + action)) {
    target = (action === "clear" ? c[current] : (c[current + 1] || c[current])).id;
    c[current].querySelector(".do-" + action).click();
    e.preventDefault();
  } else if (e.key === "j" || e.key === "ArrowRight") { focusAt(current + 1); e.preventDefault(); }
  else if (e.key === "k" || e.key === "ArrowLeft") { focusAt(current - 1); e.preventDefault(); }
  else if (link && document.getElementById(link)) { document.getElementById(link).click(); e.preventDefault(); }
});
focusAt(0);
