// Drives Debian's Chromium through two social journeys on a fake shop that installs t.js from
// the real collector, for tests/tests/browser.rs (which starts the pipeline and checks
// ClickHouse). Serves the social pages and the shop itself on one 127.0.0.1 port; Chromium
// resolves t.co, l.facebook.com and shop.example there. Prints one JSON summary on stdout.
//
//   TOUCHSTREAM_COLLECTOR_URL=http://127.0.0.1:8080 node tests/browser/tracker.mjs
//
// Env: TOUCHSTREAM_COLLECTOR_URL (required), CHROMIUM_PATH (default /usr/bin/chromium).

import http from 'node:http';
import { launch } from './chromium.mjs';
import { acceptedByCollector, untilAccepted } from './collector.mjs';

const collector = process.env.TOUCHSTREAM_COLLECTOR_URL;
const ORDER_ID = process.env.TOUCHSTREAM_ORDER_ID || `o-browser-${Date.now()}`;
const USER_ID = 'u-browser-42';
// Journey 1: landing, link click, products page, queued download, signup, purchase; journey 2:
// landing.
const EXPECTED_EVENTS = 7;

const fail = (msg) => {
  console.error(`tracker.mjs: ${msg}`);
  process.exit(1);
};
if (!collector) fail('set TOUCHSTREAM_COLLECTOR_URL to the collector base URL');
// Whatever goes wrong, the Rust test gets an answer rather than a hang.
setTimeout(() => fail('gave up after 120 s'), 120_000).unref();

function page(title, body, { tracker = false, head = '' } = {}) {
  const script = tracker ? `<script async src="${collector}/t.js" data-site-hosts="shop.example"></script>` : '';
  return `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title>${head}${script}</head><body>${body}</body></html>`;
}

// Listens first: the pages link to their own port.
async function serve() {
  const server = http.createServer((req, res) => {
    const host = (req.headers.host || '').split(':')[0];
    const path = new URL(req.url, 'http://x').pathname;
    const body = (sites[host] || {})[path];
    if (body === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end(`no ${host}${path}`);
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  const shop = `http://shop.example:${port}`;
  const sites = {
    // A post on X: t.co is where links out of X go through.
    't.co': {
      '/status/1': page('post', `<p>Our new shop!</p><a id="post-link" href="${shop}/landing?post=42">shop.example</a>`),
    },
    // Facebook's link shim, with the click id Facebook appends.
    'l.facebook.com': {
      '/l.php': page('shim', `<a id="out" href="${shop}/blog/post-1?fbclid=IwAR0browser">Continue</a>`),
    },
    'shop.example': {
      '/landing': page('landing', `<nav id="menu"><a class="nav products" href="/products">Products</a></nav>`, {
        tracker: true,
      }),
      // The command queue: calls made before t.js arrives.
      '/products': page(
        'products',
        `<button id="signup" onclick="touchstream.track('signup', {signup_kind: 'newsletter', method: 'email', form: 'footer'}); touchstream.identify('${USER_ID}')">Sign up</button>
         <button id="buy" onclick="touchstream.track('purchase', {order_id: '${ORDER_ID}', revenue: 4999, currency: 'EUR', items: 2})">Buy</button>`,
        {
          tracker: true,
          head: `<script>window.touchstream = window.touchstream || []; touchstream.push(['track', 'download', {asset_id: 'price-list', asset_kind: 'pdf'}]);</script>`,
        }
      ),
      '/blog/post-1': page('post-1', '<p>Hello from the blog.</p>', { tracker: true }),
      '/blank': page('blank', ''),
    },
  };
  return { server, port };
}

async function anonymousId(context) {
  const cookie = (await context.cookies('http://shop.example/')).find((c) => c.name === 'ts_aid');
  if (!cookie) fail('no ts_aid cookie on shop.example');
  return { id: cookie.value, sameSite: cookie.sameSite, expires: cookie.expires, domain: cookie.domain };
}

const trackerReady = (p) => p.waitForFunction(() => window.touchstream && typeof window.touchstream.track === 'function');

const { server, port } = await serve();
// The visitors present a desktop Chromium's user agent (see chromium.mjs).
const { browser } = await launch({ hosts: ['t.co', 'l.facebook.com', 'shop.example'], desktopUserAgent: true, fail });

// A spy on sendBeacon (the tracker's path when a page goes away): how many events left that
// way, kept in the shop's localStorage, which outlives the closed tabs.
async function spyOnBeacons(context) {
  await context.addInitScript(() => {
    const real = navigator.sendBeacon.bind(navigator);
    navigator.sendBeacon = (url, body) => {
      const ok = real(url, body);
      try {
        const n = ok ? JSON.parse(body).length : 0;
        localStorage.setItem('beacon_events', String(Number(localStorage.getItem('beacon_events') || 0) + n));
      } catch (e) {}
      return ok;
    };
  });
}

async function beaconEvents(context) {
  const p = await context.newPage();
  await p.goto(`http://shop.example:${port}/blank`);
  const n = await p.evaluate(() => Number(localStorage.getItem('beacon_events') || 0));
  await p.close();
  return n;
}

const errors = [];
async function newPage(context) {
  const p = await context.newPage();
  p.on('pageerror', (e) => errors.push(String(e)));
  p.on('console', (m) => m.type() === 'warning' && errors.push(m.text()));
  return p;
}

const acceptedBefore = await acceptedByCollector(collector);
try {
  // Journey 1: a post on X → landing → products (internal; a download queued before t.js
  // loaded) → signup → identify → purchase → tab closed.
  const x = await browser.newContext();
  await spyOnBeacons(x);
  const p1 = await newPage(x);
  await p1.goto(`http://t.co:${port}/status/1`);
  await Promise.all([p1.waitForURL('**/landing?post=42'), p1.click('#post-link')]);
  await trackerReady(p1);
  const referrer1 = await p1.evaluate(() => document.referrer);
  // Staying a moment: the page's first events leave by fetch after about a second.
  const flushed = p1.waitForResponse((r) => r.url() === `${collector}/v1/events`, { timeout: 10_000 });
  await Promise.all([p1.waitForURL('**/products'), p1.click('a.products')]);
  await trackerReady(p1);
  const fetched = await flushed;
  const fetchAnswer = { status: fetched.status(), body: await fetched.json() };
  await p1.click('#signup');
  await p1.click('#buy');
  const storedUser = await p1.evaluate(() => document.cookie);
  // Closing the tab right away: signup and purchase leave by sendBeacon on pagehide (unless
  // the 1 s batch timer happened to fire between the clicks).
  await p1.close({ runBeforeUnload: true });
  const journey1 = { ...(await anonymousId(x)), referrer: referrer1, cookies: storedUser, fetch: fetchAnswer, beacon_events: await beaconEvents(x) };

  // Journey 2: Facebook's link shim → a blog post (with fbclid) → tab closed at once.
  const fb = await browser.newContext();
  await spyOnBeacons(fb);
  const p2 = await newPage(fb);
  await p2.goto(`http://l.facebook.com:${port}/l.php?u=${encodeURIComponent(`http://shop.example:${port}/blog/post-1`)}`);
  await Promise.all([p2.waitForURL('**/blog/post-1**'), p2.click('#out')]);
  await trackerReady(p2);
  const referrer2 = await p2.evaluate(() => document.referrer);
  await p2.close({ runBeforeUnload: true });
  const journey2 = { ...(await anonymousId(fb)), referrer: referrer2, beacon_events: await beaconEvents(fb) };

  const accepted = (await untilAccepted(collector, acceptedBefore + EXPECTED_EVENTS)) - acceptedBefore;

  console.log(
    JSON.stringify({
      port,
      order_id: ORDER_ID,
      user_id: USER_ID,
      journeys: { x: journey1, facebook: journey2 },
      expected_events: EXPECTED_EVENTS,
      accepted_by_collector: accepted,
      page_errors: errors,
    })
  );
} finally {
  await browser.close();
  server.close();
}
