// analytics.js (@segment/analytics-next, the npm package's own browser bundle) in Debian's
// Chromium, sending to the real collector instead of Segment, for tests/tests/segment.rs.
//
// A Facebook post links to a landing page with UTMs on shop-b.example; the page loads the
// bundle from this script's own server (no CDN: the settings analytics.js would fetch from
// Segment's CDN are given inline, pointing its Segment.io destination at the collector), then
// the visitor signs up, is identified and buys. Prints one JSON summary on stdout.
//
// Then t.js on two more pages of shop-b.example, once with site B's write key in
// data-write-key and once with another site's (OTHER_WRITE_KEY): the collector's answers say
// whether each was taken.
//
// Env: TOUCHSTREAM_COLLECTOR_URL, WRITE_KEY, OTHER_WRITE_KEY, ORDER_ID (required),
// CHROMIUM_PATH, REVENUE (major units, default 24.5).

import http from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { launch } from './chromium.mjs';

const fail = (msg) => {
  console.error(`analytics-next.mjs: ${msg}`);
  process.exit(1);
};
const collector = process.env.TOUCHSTREAM_COLLECTOR_URL || fail('set TOUCHSTREAM_COLLECTOR_URL');
const writeKey = process.env.WRITE_KEY || fail('set WRITE_KEY');
const orderId = process.env.ORDER_ID || fail('set ORDER_ID');
const otherKey = process.env.OTHER_WRITE_KEY || fail('set OTHER_WRITE_KEY');
const revenue = Number(process.env.REVENUE || '24.5');
setTimeout(() => fail('gave up after 120 s'), 120_000).unref();

// The package's UMD build: index.js defines window.AnalyticsNext; its lazily loaded chunks are
// fetched from <cdnURL>/analytics-next/bundles/.
const require = createRequire(import.meta.url);
const umd = path.join(path.dirname(require.resolve('@segment/analytics-next/package.json')), 'dist', 'umd');
const collectorHost = new URL(collector).host;

const shopPage = (port) => `<!doctype html><html><head><meta charset="utf-8"><title>Landing</title>
<script src="/ajs/index.js"></script>
<script>
  // What analytics.js would fetch from Segment's CDN, given here: only the Segment.io
  // destination, sending to the collector.
  window.analytics = AnalyticsNext.AnalyticsBrowser.load({
    writeKey: ${JSON.stringify(writeKey)},
    cdnURL: 'http://shop-b.example:${port}/cdn',
    cdnSettings: {
      integrations: {
        'Segment.io': { apiKey: ${JSON.stringify(writeKey)}, apiHost: ${JSON.stringify(collectorHost + '/v1')}, protocol: 'http' },
      },
      plan: {},
      metrics: { sampleRate: 0 },
    },
  });
  window.sent = [];
  window.journey = async (orderId, revenue) => {
    const a = window.analytics;
    const out = [];
    out.push(await a.page('Landing'));
    out.push(await a.track('Signed Up', { method: 'email' }));
    out.push(await a.identify('u-browser-b', { plan: 'pro' }));
    out.push(await a.track('Order Completed', { order_id: orderId, revenue, currency: 'EUR', products: [{ sku: 'B-1', price: revenue }] }));
    const user = await a.user();
    return { anonymousId: user.anonymousId(), failed: out.filter((ctx) => ctx.failedDelivery && ctx.failedDelivery()).length };
  };
</script></head><body><h1>Spring</h1></body></html>`;

const server = http.createServer((req, res) => {
  const host = (req.headers.host || '').split(':')[0];
  const url = new URL(req.url, 'http://x');
  const send = (status, type, body) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  if (host === 'l.facebook.com' && url.pathname === '/l.php') {
    const target = url.searchParams.get('u');
    return send(200, 'text/html', `<!doctype html><a id="out" href="${target}">Continue</a>`);
  }
  if (host === 'shop-b.example' && url.pathname === '/landing') return send(200, 'text/html', shopPage(port));
  if (host === 'shop-b.example' && url.pathname === '/tjs') {
    const key = url.searchParams.get('key');
    return send(
      200,
      'text/html',
      `<!doctype html><title>t.js</title><script async src="${collector}/t.js" data-write-key="${key}" data-site-hosts="shop-b.example"></script>`
    );
  }
  const file =
    url.pathname === '/ajs/index.js'
      ? 'index.js'
      : url.pathname.startsWith('/cdn/analytics-next/bundles/')
        ? path.basename(url.pathname)
        : null;
  if (host === 'shop-b.example' && file && existsSync(path.join(umd, file))) {
    return send(200, 'application/javascript', readFileSync(path.join(umd, file)));
  }
  send(404, 'text/plain', `no ${host}${url.pathname}`);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;

const { browser } = await launch({ hosts: ['l.facebook.com', 'shop-b.example'], desktopUserAgent: true, fail });

const errors = [];
const answers = [];
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('response', (r) => {
    if (r.url().startsWith(collector)) answers.push({ url: r.url().slice(collector.length), status: r.status(), method: r.request().method() });
  });
  const landing = `http://shop-b.example:${port}/landing?utm_source=facebook&utm_medium=social&utm_campaign=spring&utm_content=post-9`;
  await page.goto(`http://l.facebook.com:${port}/l.php?u=${encodeURIComponent(landing)}`);
  await Promise.all([page.waitForURL('**/landing**'), page.click('#out')]);
  const referrer = await page.evaluate(() => document.referrer);
  const result = await page.evaluate(([o, r]) => window.journey(o, r), [orderId, revenue]);
  await context.close();

  // t.js with a write key: its page view goes to /v1/events?write_key=…
  const tjs = {};
  for (const [name, key] of [['own', writeKey], ['other', otherKey]]) {
    const c = await browser.newContext();
    const p = await c.newPage();
    p.on('pageerror', (e) => errors.push(String(e)));
    const answered = p.waitForResponse((r) => r.url().startsWith(`${collector}/v1/events`) && r.request().method() === 'POST', {
      timeout: 15_000,
    });
    await p.goto(`http://shop-b.example:${port}/tjs?key=${encodeURIComponent(key)}`);
    const r = await answered;
    const id = (await c.cookies(`http://shop-b.example:${port}/`)).find((k) => k.name === 'ts_aid');
    tjs[name] = { url: r.url().slice(collector.length), status: r.status(), body: await r.json().catch(() => null), id: id && id.value };
    await c.close();
  }
  console.log(JSON.stringify({ port, landing, referrer, ...result, answers, tjs, errors }));
} finally {
  await browser.close();
  server.close();
}
