/*! touchstream tracker: README.md, "Tracker" */
// Served without its full-line comments and indentation (crates/producer/src/api.rs): no
// string or template literal may have a line break in its text.
((w, d, n) => {
  'use strict';
  const noop = () => {};
  const safe = (f) => (...a) => {
    try {
      return f(...a);
    } catch (e) {}
  };
  const before = w.touchstream;
  if (before && before.track) return; // included twice
  try {
    const script = d.currentScript || d.querySelector('script[src*="/t.js"]');
    const opt = script.dataset;
    const url = new URL(opt.endpoint || '/v1/events', script.src);
    if (opt.writeKey) url.searchParams.set('write_key', opt.writeKey); // names the site
    // data-consent: "required" keeps events in memory, stores nothing until consent(true);
    // "cookieless" stores nothing ever and the collector computes a daily visitor id.
    const cookieless = opt.consent === 'cookieless';
    if (cookieless) url.searchParams.set('cookieless', '1');
    const endpoint = url.href;
    const siteHosts = (opt.siteHosts || '').toLowerCase().split(/[\s,]+/).filter(Boolean);
    const useCookie = opt.storage !== 'localstorage';
    const off = opt.respectDnt === 'true' && (n.doNotTrack === '1' || !!n.globalPrivacyControl);
    let consent = opt.consent === 'required' ? 0 : 1; // 0: not yet asked, -1: refused
    // Top-level fields per event type; other keys go to properties.
    const FIELDS = {
      click: ['target_url', 'element', 'page_url', 'referrer'],
      signup: ['signup_kind', 'method'],
      download: ['asset_id', 'asset_kind'],
      purchase: ['order_id', 'revenue', 'currency'],
    };
    const CAMPAIGN = /^(utm_\w+|gclid|gbraid|wbraid|dclid|msclkid|fbclid|ttclid|li_fat_id|twclid|sccid|epik|rdt_cid)$/i;
    const BATCH = 20;
    const MAX_QUEUED = 500;

    const uuid = () => {
      try {
        return crypto.randomUUID(); // secure contexts only
      } catch (e) {
        return '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
          (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16)
        );
      }
    };

    // First-party: a 2-year SameSite=Lax cookie on the matching site host (subdomains share it),
    // or localStorage.
    const read = (key) => {
      try {
        if (!useCookie) return localStorage.getItem(key);
        const m = d.cookie.match(`(?:^|; )${key}=([^;]*)`);
        return m && decodeURIComponent(m[1]);
      } catch (e) {}
    };
    const allowed = () => consent > 0 && !cookieless && !off;
    const load = (key) => allowed() && read(key);
    const store = (key, value) => allowed() && put(key, value);
    const put = (key, value, cookie = useCookie) => {
      try {
        if (!cookie) return value ? localStorage.setItem(key, value) : localStorage.removeItem(key);
        const host = location.hostname;
        const domain = siteHosts.find((s) => host === s || host.endsWith('.' + s));
        const secure = location.protocol === 'https:' ? '; Secure' : '';
        const c = `${key}=${encodeURIComponent(value || '')}; path=/; max-age=${value ? 63072000 : 0}; SameSite=Lax${secure}`;
        if (domain) d.cookie = `${c}; domain=${domain}`;
        if (!domain || read(key) !== value) d.cookie = c; // domain refused: host-only
      } catch (e) {}
    };

    let anonymousId = load('ts_aid') || uuid();
    let userId = load('ts_uid');
    let queue = [];
    let timer = 0;
    let failures = 0;

    const schedule = (ms) => {
      timer = timer || setTimeout(safe(flush), ms);
    };

    const event = (type, fields) => {
      if (off || consent < 0) return;
      const e = {
        event_id: uuid(),
        event_type: type,
        occurred_at: Date.now(),
        page_url: location.href,
      };
      if (!cookieless) e.anonymous_id = anonymousId;
      if (userId) e.user_id = userId;
      if (d.referrer) e.referrer = d.referrer;
      const props = {};
      for (const [k, v] of Object.entries(fields || {})) {
        if (v == null) continue;
        if (FIELDS[type].includes(k)) e[k] = k === 'revenue' ? v : String(v);
        else e.properties = Object.assign(props, { [k]: String(v) });
      }
      queue = queue.concat(e).slice(-MAX_QUEUED);
      if (!consent) return; // held in memory until consent(true)
      if (queue.length >= BATCH && !failures) flush();
      else schedule(1000);
    };

    const retry = (batch) => {
      if (consent < 1) return;
      queue = batch.concat(queue).slice(-MAX_QUEUED);
      clearTimeout(timer);
      timer = 0;
      // Exponential backoff with jitter: 2 s, 4 s … a minute.
      schedule(Math.min(60000, 1000 * 2 ** ++failures) * (0.5 + Math.random() / 2));
    };

    // A string body is text/plain: no CORS preflight. 4xx but 429 are not retried.
    const post = (batch, body) =>
      fetch(endpoint, {
        method: 'POST',
        body,
        keepalive: body.length < 60000,
      })
        .then(
          (r) => {
            if (r.status === 429 || r.status >= 500) return retry(batch);
            failures = 0;
            if (r.status >= 400) r.json().then((j) => console.warn('touchstream: rejected', j), noop);
          },
          () => retry(batch)
        )
        .catch(noop);

    // BATCH events a request; by beacon when the page goes away.
    const flush = (beacon) => {
      clearTimeout(timer);
      timer = 0;
      while (consent > 0 && queue.length) {
        const batch = queue.splice(0, BATCH);
        const now = Date.now();
        batch.forEach((e) => (e.sent_at = now));
        const body = JSON.stringify(batch);
        if (!(beacon === true && n.sendBeacon && n.sendBeacon(endpoint, body))) post(batch, body);
      }
    };

    // "a#buy.btn.primary", under the nearest ancestor with an id: "#nav a.menu".
    const describe = (a) => {
      const cls = [...a.classList].slice(0, 2).join('.');
      const own = a.tagName.toLowerCase() + (a.id ? '#' + a.id : cls ? '.' + cls : '');
      const up = !a.id && a.parentElement && a.parentElement.closest('[id]');
      return ((up ? '#' + up.id + ' ' : '') + own).slice(0, 200);
    };

    // A link click happens on this page: it is the referrer, and page_url drops the landing's
    // campaign parameters, so the enricher sees navigation within the site, not a second touch.
    const onClick = (ev) => {
      const a = ev.target.closest('a[href]');
      if (!a) return;
      const u = new URL(location.href);
      for (const k of [...u.searchParams.keys()]) if (CAMPAIGN.test(k)) u.searchParams.delete(k);
      event('click', { target_url: a.href, element: describe(a), page_url: u.href, referrer: location.href });
    };

    const api = {
      track: safe((type, fields) => FIELDS[type] && event(type, fields)),
      identify: safe((id) => store('ts_uid', (userId = id == null || id === '' ? undefined : String(id)))),
      flush: safe(flush),
      // true: store the visitor id and send what was held; false: clear what is stored, drop
      // what is held, send nothing more.
      consent: safe((yes) => {
        if (yes) {
          consent = 1;
          anonymousId = load('ts_aid') || anonymousId;
          userId = userId || load('ts_uid');
          store('ts_aid', anonymousId);
          store('ts_uid', userId);
          queue.forEach((e) => {
            if (!cookieless) e.anonymous_id = anonymousId;
            if (userId) e.user_id = e.user_id || userId;
          });
          schedule(0);
        } else {
          consent = -1;
          queue = [];
          anonymousId = uuid();
          userId = undefined;
          for (const k of ['ts_aid', 'ts_uid']) put(k, '', true), put(k, '', false);
        }
      }),
      push: safe((c) => api[c[0]](...c.slice(1))),
    };
    w.touchstream = api;
    store('ts_aid', anonymousId); // renews the 2 years

    // Queued identify calls, the landing touch (page_url with its UTMs and click ids, the
    // referrer), the rest of the queue.
    const pending = Array.isArray(before) ? before : [];
    const isIdentify = (c) => c && c[0] === 'identify';
    pending.filter(isIdentify).forEach(api.push);
    event('click');
    pending.filter((c) => !isIdentify(c)).forEach(api.push);

    d.addEventListener('click', safe(onClick), true);
    const leave = safe(() => flush(true));
    d.addEventListener('visibilitychange', () => d.visibilityState === 'hidden' && leave());
    w.addEventListener('pagehide', leave);
  } catch (e) {} // nothing may throw into the page
})(window, document, navigator);
