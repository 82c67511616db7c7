// Keyboard review on the run page (labeler service); a file, not inline, for the Content-Security-Policy.
// One key per decision: click the focused card's button; once htmx has swapped the card in,
// focus the next card (htmx itself re-focuses the swapped card, so remember the target by id).
function cards() { return Array.from(document.querySelectorAll("#tiles .tile")); }
function focusAt(i) { const c = cards(); if (c.length) c[Math.max(0, Math.min(i, c.length - 1))].focus(); }
let current = 0, target = null;
document.addEventListener("focusin", (e) => { const i = cards().indexOf(e.target.closest(".tile")); if (i >= 0) current = i; });
document.body.addEventListener("htmx:afterSettle", () => {
  const el = target && document.getElementById(target);
  target = null;
  if (el) el.focus();
});
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const action = {a: "accept", r: "reject", u: "clear"}[e.key];
  const c = cards();
  if (action && c[current]) {
    target = (action === "clear" ? c[current] : (c[current + 1] || c[current])).id;
    c[current].querySelector(".do-" + action).click();
    e.preventDefault();
  } else if (e.key === "j" || e.key === "ArrowRight") { focusAt(current + 1); e.preventDefault(); }
  else if (e.key === "k" || e.key === "ArrowLeft") { focusAt(current - 1); e.preventDefault(); }
});
focusAt(0);
