// Sends one journey through a real server-side SDK, configured with the collector as its host,
// for tests/tests/segment.rs: a page view from a social post, a signup, an identify, and an
// "Order Completed" from the backend (no page, user id only). Prints one JSON summary on
// stdout: what the SDK sent (the request bodies, as it emitted them) and how each request was
// answered.
//
//   SDK=segment|rudder TOUCHSTREAM_COLLECTOR_URL=http://127.0.0.1:8080 WRITE_KEY=... node sdk-node.mjs
//
// Env: SDK, TOUCHSTREAM_COLLECTOR_URL, WRITE_KEY, ANONYMOUS_ID, USER_ID, ORDER_ID (all
// required), LANDING_URL (the page the post links to), REFERRER, CAMPAIGN (JSON of
// context.campaign, for an SDK caller that parsed the UTMs itself), REVENUE (major units).

import { Analytics } from '@segment/analytics-node';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';

const env = (k) => {
  const v = process.env[k];
  if (!v) {
    console.error(`sdk-node.mjs: set ${k}`);
    process.exit(1);
  }
  return v;
};
const sdk = env('SDK');
const collector = env('TOUCHSTREAM_COLLECTOR_URL');
const writeKey = env('WRITE_KEY');
const anonymousId = env('ANONYMOUS_ID');
const userId = env('USER_ID');
const orderId = env('ORDER_ID');
const landing = env('LANDING_URL');
const referrer = process.env.REFERRER || '';
const campaign = process.env.CAMPAIGN ? JSON.parse(process.env.CAMPAIGN) : undefined;
const revenue = Number(process.env.REVENUE || '19.99');
setTimeout(() => {
  console.error('sdk-node.mjs: gave up after 60 s');
  process.exit(1);
}, 60_000).unref();

const browserUa = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36';
// A second between calls: the collector places each message at receivedAt - (sentAt - its own
// time), per request, so messages sent in different requests are ordered only as well as the
// requests' transit times agree; on a loaded machine those differ by far more than 30 ms and the
// signup could land before its own landing page.
const pause = () => new Promise((r) => setTimeout(r, 1000));
const requests = [];
const statuses = [];
const errors = [];

// The journey, in the SDK's own call shapes (both follow Segment's spec).
const calls = [
  [
    'page',
    {
      anonymousId,
      name: 'Landing',
      properties: { url: landing, title: 'Spring collection' },
      context: { page: { url: landing, referrer }, userAgent: browserUa, ...(campaign ? { campaign } : {}) },
    },
  ],
  [
    'track',
    {
      anonymousId,
      event: 'Signed Up',
      properties: { method: 'email', plan: 'free' },
      context: { page: { url: new URL('/signup', landing).href, referrer: landing }, userAgent: browserUa },
    },
  ],
  ['identify', { anonymousId, userId, traits: { email: 'someone@example.com' } }],
  [
    'track',
    {
      userId,
      event: 'Order Completed',
      properties: {
        order_id: orderId,
        revenue,
        currency: 'EUR',
        products: [
          { product_id: 'p-1', sku: 'TS-1', price: 9.99, quantity: 1 },
          { product_id: 'p-2', sku: 'TS-2', price: revenue - 9.99, quantity: 1 },
        ],
      },
      context: { ip: '203.0.113.77' },
      integrations: { All: true },
    },
  ],
];

if (sdk === 'segment') {
  const analytics = new Analytics({ writeKey, host: collector, flushAt: 50, flushInterval: 300, maxRetries: 2 });
  analytics.on('http_request', (r) => requests.push(JSON.parse(r.body)));
  analytics.on('http_response', (r) => statuses.push(r.status));
  analytics.on('error', (e) => errors.push(String(e.reason || e.code || e)));
  for (const [method, args] of calls) {
    analytics[method](args);
    await pause();
  }
  await analytics.closeAndFlush({ timeout: 30_000 });
} else if (sdk === 'rudder') {
  const analytics = new RudderAnalytics(writeKey, {
    dataPlaneUrl: collector,
    flushAt: 50,
    flushInterval: 300,
    logLevel: 'error',
    // Not a Redis queue: the in-memory one, as most backends run it.
  });
  // The SDK gzips the body itself; its axios instance says what went out and came back.
  analytics.axiosInstance.interceptors.request.use((config) => {
    requests.push({ headers: { ...config.headers }, gzip: config.headers['Content-Encoding'] === 'gzip' });
    return config;
  });
  analytics.axiosInstance.interceptors.response.use(
    (r) => {
      statuses.push(r.status);
      return r;
    },
    (e) => {
      statuses.push(e.response ? e.response.status : String(e.code));
      return Promise.reject(e);
    }
  );
  // With the pauses, each call is flushed on its own (flushInterval 300 ms).
  for (const [method, args] of calls) {
    analytics[method](args);
    await pause();
  }
  await analytics.flush().catch((e) => errors.push(String(e)));
  // Anything still queued from a flush that was under way.
  await new Promise((r) => setTimeout(r, 500));
  await analytics.flush().catch((e) => errors.push(String(e)));
} else {
  console.error(`sdk-node.mjs: SDK must be segment or rudder, not ${sdk}`);
  process.exit(1);
}

console.log(JSON.stringify({ sdk, requests, statuses, errors }));
