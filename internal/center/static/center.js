// The Transparency Center's checks in the reader's browser: it loads the
// verifier (the repository's tlog code compiled to WebAssembly), refuses
// one whose SHA-256 is not the one the page names, and verifies each
// entry's proof under the log's key and witness policy. A page has one
// check (#browser-check, with #verify-input and #raw-entry) or several
// (section.browser-check, naming their input and shown entry by
// data-input and data-raw). The result goes on each: data-verified="true"
// or "false", and what failed.
(async () => {
  // The script may come before the last of the page's checks.
  if (document.readyState === 'loading') {
    await new Promise((resolve) => document.addEventListener('DOMContentLoaded', resolve, { once: true }));
  }
  const boxes = Array.from(document.querySelectorAll('section.browser-check'));
  if (boxes.length === 0) return;
  const started = performance.now();
  const set = (box, ok, text) => {
    box.dataset.verified = ok ? 'true' : 'false';
    box.dataset.ms = String(Math.round(performance.now() - started));
    box.querySelector('.result').textContent = text;
  };
  const all = (ok, text) => boxes.forEach((box) => set(box, ok, text));
  try {
    if (!window.crypto || !crypto.subtle) {
      all(false, '✗ Your browser checks only over https (or on this machine): it has no SHA-256 here to check the verifier with.');
      return;
    }
    const want = document.documentElement.dataset.verifier;
    const bytes = await (await fetch(boxes[0].dataset.wasm)).arrayBuffer();
    const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    const got = Array.from(sum, (b) => b.toString(16).padStart(2, '0')).join('');
    if (got !== want) {
      all(false, '✗ The verifier served is not the one this page names: sha256 ' + got);
      return;
    }
    const go = new Go();
    const { instance } = await WebAssembly.instantiate(bytes, go.importObject);
    go.run(instance);
  } catch (e) {
    all(false, '✗ Your browser could not load the verifier: ' + e);
    return;
  }
  for (const box of boxes) {
    try {
      check(box, set);
    } catch (e) {
      set(box, false, '✗ Your browser could not verify it: ' + e);
    }
  }
})();

function check(box, set) {
  const input = document.getElementById(box.dataset.input || 'verify-input');
  if (!input) {
    set(box, false, '✗ The page hands your browser nothing to verify.');
    return;
  }
  const v = JSON.parse(input.textContent);
  // What is verified must be what the page shows as logged.
  const shown = document.getElementById(box.dataset.raw || 'raw-entry');
  if (!shown || shown.textContent !== v.entry) {
    set(box, false, '✗ The entry this page shows is not the entry it hands your browser to verify.');
    return;
  }
  // The log's key and witness policy are pinned in this browser the
  // first time it checks an entry of the log: a Center that later
  // hands it others is caught, as the Center itself pins the platform.
  const pinKey = 'vitrine-pin ' + box.dataset.origin;
  const pin = JSON.stringify({ vkey: v.vkey, policy: v.policy });
  const pinned = localStorage.getItem(pinKey);
  if (pinned !== null && pinned !== pin) {
    set(box, false, '✗ The log\'s key or witness policy differs from the one your browser pinned for ' + box.dataset.origin + ' the first time it checked an entry of it.');
    return;
  }
  const r = vitrineVerifyProof(v.entry, v.proof, v.vkey, v.policy);
  if (!r.ok) {
    set(box, false, '✗ Your browser could not verify it: ' + r.error);
    return;
  }
  if (String(r.index) !== box.dataset.index || r.origin !== box.dataset.origin) {
    set(box, false, '✗ The proof verifies, but for entry ' + r.index + ' of ' + r.origin + ', not the entry this page is about.');
    return;
  }
  if (pinned === null) {
    localStorage.setItem(pinKey, pin);
  }
  set(box, true, '✓ Verified in your browser: the entry shown as logged is entry ' + r.index + ' of the tree of ' + r.size +
    ' entries of ' + r.origin + ', signed by the log and cosigned by ' + r.cosigners.join(', ') + ' (key pinned in this browser' +
    (pinned === null ? ' now' : '') + ').');
}
