// The Transparency Center's checks in the reader's browser: it loads the
// verifier (the repository's tlog and release code compiled to
// WebAssembly), refuses one whose SHA-256 is not the one the page names,
// and verifies each entry's proof under the log's key and witness policy.
// A page has one check (#browser-check, with #verify-input and
// #raw-entry) or several (section.browser-check, naming their input and
// shown entry by data-input and data-raw). The result goes on each:
// data-verified="true" or "false", and what failed. On a release's page
// the check also covers the provenance: the envelope the entry binds,
// signed with the release key (pinned in this browser on first use),
// naming the entry's artifacts, and that the page shows what was
// verified, each on its item of #release-checks.
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
    // Whatever stopped a release's checks, none is left pending.
    const list = box.id === 'browser-check' && document.getElementById('release-checks');
    if (list) {
      for (const li of list.querySelectorAll('[data-verified="pending"]')) {
        li.dataset.verified = 'false';
        li.querySelector('.mark').textContent = '✗';
        li.querySelector('.why').textContent = 'not checked: ' + text.replace(/^✗ /, '');
      }
    }
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
  const proven = 'entry ' + r.index + ' of the tree of ' + r.size + ' entries of ' + r.origin + ', signed by the log and cosigned by ' + r.cosigners.join(', ');
  const list = box.id === 'browser-check' && document.getElementById('release-checks');
  // mark sets one check of a release's page; ok is true, false, or null
  // for a check not made.
  const mark = (name, ok, text) => {
    const li = list && list.querySelector('[data-check="' + name + '"]');
    if (!li) return;
    li.dataset.verified = ok === true ? 'true' : 'false';
    li.querySelector('.mark').textContent = ok === true ? '✓' : '✗';
    li.querySelector('.why').textContent = text;
  };
  let failed = [];
  // A release's page: its provenance, checked with the release key
  // pinned in this browser on first use, like the log's key.
  let releasePin = null, releasePinned = null;
  if (v.release_key) {
    mark('inclusion', true, proven);
    const releasePinKey = 'vitrine-release-key ' + box.dataset.origin;
    releasePin = v.release_key;
    releasePinned = localStorage.getItem(releasePinKey);
    const rr = vitrineVerifyRelease(v.entry, v.envelope || '', v.release_key);
    if (releasePinned !== null && releasePinned !== releasePin) {
      rr.checks.signature = { ok: false, error: 'the release key this page hands your browser differs from the one it pinned for ' + box.dataset.origin + ' the first time it checked a release of it' };
      rr.checks.subjects = { ok: null, error: 'not checked: the signature check failed' };
    }
    for (const name of ['envelope', 'signature', 'subjects']) {
      const c = rr.checks[name];
      mark(name, c.ok, c.ok === true ? 'verified' : c.error);
      // The first that failed; those after it were not made.
      if (c.ok === false) failed.push({ envelope: 'the provenance served is not the envelope the entry binds', signature: 'the provenance\'s signature does not verify under the release key', subjects: 'the provenance does not name exactly the entry\'s artifacts' }[name]);
    }
    // What the page shows must be what was verified: the artifacts
    // (the entry's) and, if shown, the provenance's fields.
    let differs = '';
    if (rr.artifacts) {
      const rows = Array.from(document.querySelectorAll('tr[data-artifact]'), (tr) => tr.querySelector('th').textContent + ' ' + tr.querySelector('code').textContent);
      const want = rr.artifacts.map((a) => a.name + ' ' + a.sha256);
      if (rows.join('\n') !== want.join('\n')) differs = 'the artifacts listed are not the entry\'s';
      for (const el of document.querySelectorAll('[data-provenance]')) {
        if (!differs && el.textContent !== rr.provenance[el.dataset.provenance]) differs = 'the provenance shown says ' + el.dataset.provenance + ' "' + el.textContent + '", the verified one "' + rr.provenance[el.dataset.provenance] + '"';
      }
      mark('shown', !differs, differs || 'the page shows the entry\'s artifacts and ' + (document.querySelector('[data-provenance]') ? 'the verified provenance' : 'no provenance'));
    } else {
      mark('shown', null, 'not checked: the provenance did not verify');
    }
    if (differs) failed.push(differs);
  }
  if (failed.length > 0) {
    set(box, false, '✗ Your browser verified that the release-log entry is ' + proven + ', but not its provenance: ' + failed.join('; ') + '.');
    return;
  }
  if (pinned === null) {
    localStorage.setItem(pinKey, pin);
  }
  if (releasePin !== null && releasePinned === null) {
    localStorage.setItem('vitrine-release-key ' + box.dataset.origin, releasePin);
  }
  set(box, true, '✓ Verified in your browser: the entry shown below as logged is ' + proven + ' (key pinned in this browser' +
    (pinned === null ? ' now' : '') + ')' + (v.release_key ? '; its provenance is the envelope it binds, signed with the release key (pinned' +
    (releasePinned === null ? ' now' : '') + '), naming its artifacts.' : '.'));
}
