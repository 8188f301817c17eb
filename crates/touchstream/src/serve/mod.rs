//! `touchstream serve`: the reports as a web page with charts, read-only.
//!
//! One page per site (`/site/<site>`) with a model and date-range picker; every chart is the
//! SVG of [`crate::chart`] built from the report queries by [`crate::figures`], inlined in the
//! HTML, and downloadable as CSV (its numbers), SVG and JSON. The page's script and style are
//! compiled into the binary (`assets/`); the page fetches nothing from anywhere else, and says
//! so in its Content-Security-Policy.
//!
//! | route | answer |
//! | --- | --- |
//! | `/` | redirect to the first site's page |
//! | `/site/<site>?model=&from=&to=` | the page |
//! | `/site/<site>/data.json?…` | every figure of the page: panels, values, report tables |
//! | `/site/<site>/chart/<figure>.svg?…&width=` | one chart (`inline=1`: without its own title) |
//! | `/site/<site>/chart/<figure>.csv?…` · `.json` | its numbers |
//! | `/assets/app.css`, `/assets/app.js` | compiled in |
//! | `/healthz` | `ok` (no password needed, reads nothing) |
//!
//! `from` and `to` are dates (the `to` day is included, as with `touchstream report`) or RFC
//! 3339 times; the default is the 30 days up to and including today (UTC).

mod auth;
mod page;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use time::{Duration as Days, OffsetDateTime};
use touchstream_model::AttributionModel;
use touchstream_runtime::LogConfig;
use touchstream_warehouse::reports::{ReportParams, ReportTable};
use touchstream_warehouse::{WarehouseConfig, WarehouseError};

use crate::chart::{self, Figure};
use crate::figures::{self, Tables};
use crate::report::{Bound, parse_time, write_csv};

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// TOML file with a [serve] table (default: $TOUCHSTREAM_CONFIG, if set). Environment:
    /// TOUCHSTREAM_SERVE__<KEY>, e.g. TOUCHSTREAM_SERVE__AUTH__PASSWORD.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides `listen`; default 127.0.0.1:8090).
    #[arg(long)]
    pub listen: Option<String>,
    /// ClickHouse HTTP interface (overrides `clickhouse.url`).
    #[arg(long)]
    pub clickhouse_url: Option<String>,
    /// ClickHouse database (overrides `clickhouse.database`).
    #[arg(long)]
    pub database: Option<String>,
}

/// `[serve]` in the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    pub listen: String,
    /// Who to read as: the read-only `touchstream_reader` by default.
    pub clickhouse: WarehouseConfig,
    pub auth: AuthConfig,
    /// How long a page's report answers are reused (reloads, charts redrawn for another
    /// width); 0: never.
    pub cache_seconds: u64,
    /// How long a page waits for ClickHouse before it shows the error banner instead.
    pub timeout_seconds: u64,
    pub log: LogConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".into(),
            clickhouse: WarehouseConfig {
                user: "touchstream_reader".into(),
                password: "touchstream_reader".into(),
                ..WarehouseConfig::default()
            },
            auth: AuthConfig::default(),
            cache_seconds: 30,
            timeout_seconds: 30,
            log: LogConfig {
                format: touchstream_runtime::telemetry::LogFormat::Text,
                ..LogConfig::default()
            },
        }
    }
}

/// HTTP basic authentication, for when the page is reachable by others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub user: String,
    /// Empty: no authentication.
    pub password: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            user: "touchstream".into(),
            password: String::new(),
        }
    }
}

pub fn config(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut cfg: ServeConfig = touchstream_runtime::load_config("serve", args.config.as_deref())?;
    if let Some(listen) = &args.listen {
        cfg.listen = listen.clone();
    }
    if let Some(url) = &args.clickhouse_url {
        cfg.clickhouse.url = url.clone();
    }
    if let Some(database) = &args.database {
        cfg.clickhouse.database = database.clone();
    }
    Ok(cfg)
}

pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let cfg = config(args)?;
    touchstream_runtime::telemetry::init(&cfg.log);
    let addr: SocketAddr = cfg.listen.parse().with_context(|| {
        format!(
            "listen = {:?} is not an address like 127.0.0.1:8090",
            cfg.listen
        )
    })?;
    if !addr.ip().is_loopback() && cfg.auth.password.is_empty() {
        tracing::warn!(
            %addr,
            "serving the reports beyond this machine without a password: set auth.password \
             (TOUCHSTREAM_SERVE__AUTH__PASSWORD)"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let app = App::new(cfg.clone());
    tracing::info!(
        url = %format!("http://{addr}/"),
        clickhouse = %cfg.clickhouse.url,
        database = %cfg.clickhouse.database,
        user = %cfg.clickhouse.user,
        auth = !cfg.auth.password.is_empty(),
        "serving the web report"
    );
    let shutdown = touchstream_runtime::shutdown::on_signals();
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("the web server stopped")?;
    Ok(())
}

/// The server's state.
pub struct App {
    cfg: ServeConfig,
    client: clickhouse::Client,
    cache: Mutex<HashMap<CacheKey, (Instant, ReportTable)>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    site: String,
    report: &'static str,
    /// `None` for a report the model does not change.
    model: Option<AttributionModel>,
    from: i64,
    to: i64,
}

/// Report answers kept at most (about 50 pages' worth); the oldest go first.
const CACHE_ENTRIES: usize = 512;

impl App {
    pub fn new(cfg: ServeConfig) -> Arc<Self> {
        let client = touchstream_warehouse::client(&cfg.clickhouse);
        Arc::new(Self {
            cfg,
            client,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The sites there are pages for: every site with events, and the default one (whose
    /// page explains that there is no data yet when there is none).
    async fn sites(&self) -> Vec<String> {
        // Bounded like every other read: ClickHouse down or silent leaves the default site,
        // whose page then shows why there is nothing.
        let limit = Duration::from_secs(self.cfg.timeout_seconds.max(1));
        let query = self
            .client
            .query("SELECT DISTINCT site_id FROM events ORDER BY site_id")
            .fetch_all::<String>();
        let found = tokio::time::timeout(limit, query)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut sites = vec![touchstream_model::DEFAULT_SITE.to_owned()];
        sites.extend(
            found
                .into_iter()
                .filter(|s| s != touchstream_model::DEFAULT_SITE),
        );
        sites
    }

    /// What the page's figures need: the answers still fresh in the cache, the others run at
    /// once. A report the model does not change (path-length, lifecycle) is cached for every
    /// model, so switching the model reruns only the reports it changes.
    async fn tables(&self, site: &str, params: &ReportParams) -> Result<Tables, WarehouseError> {
        let params = &ReportParams {
            site: site.to_owned(),
            ..params.clone()
        };
        let key = |report: &'static str, model: AttributionModel| CacheKey {
            site: site.into(),
            report,
            model: figures::uses_model(report).then_some(model),
            from: params.from.unix_timestamp(),
            to: params.to.unix_timestamp(),
        };
        let ttl = Duration::from_secs(self.cfg.cache_seconds);
        let mut tables = Tables::default();
        let mut missing = Vec::new();
        {
            let cache = self.cache.lock().ok().filter(|_| !ttl.is_zero());
            for (report, model) in figures::queries(&figures::on_page(), params.model) {
                match cache.as_ref().and_then(|c| c.get(&key(report, model))) {
                    Some((at, table)) if at.elapsed() < ttl => {
                        tables.insert(report, model, table.clone());
                    }
                    _ => missing.push((report, model)),
                }
            }
        }
        if missing.is_empty() {
            return Ok(tables);
        }
        let limit = Duration::from_secs(self.cfg.timeout_seconds.max(1));
        let loaded = tokio::time::timeout(limit, figures::run_all(&self.client, &missing, params))
            .await
            .map_err(|_| WarehouseError::Unavailable {
                what: format!(
                    "the page's reports (no answer within {} s)",
                    limit.as_secs()
                ),
                source: clickhouse::error::Error::TimedOut,
            })??;
        if !ttl.is_zero()
            && let Ok(mut cache) = self.cache.lock()
        {
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            while cache.len() + missing.len() > CACHE_ENTRIES {
                let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                cache.remove(&oldest);
            }
            let now = Instant::now();
            for (report, model, table) in loaded.iter() {
                cache.insert(key(report, model), (now, table.clone()));
            }
        }
        for (report, model, table) in loaded.iter() {
            tables.insert(report, model, table.clone());
        }
        Ok(tables)
    }

    /// The first and last day with events, and how many there are: the empty state's hint.
    async fn extent(&self) -> Option<(String, String, u64)> {
        #[derive(clickhouse::Row, Deserialize)]
        struct Extent {
            events: u64,
            first: String,
            last: String,
        }
        let extent = self
            .client
            .query(
                "SELECT count() AS events, toString(toDate(min(event_time))) AS first, \
                 toString(toDate(max(event_time))) AS last FROM events",
            )
            .fetch_one::<Extent>()
            .await
            .ok()?;
        (extent.events > 0).then_some((extent.first, extent.last, extent.events))
    }
}

pub fn router(app: Arc<App>) -> Router {
    let guarded = Router::new()
        .route("/", get(index))
        .route("/site/{site}", get(site_page))
        .route("/site/{site}/data.json", get(site_data))
        .route("/site/{site}/chart/{file}", get(chart_file))
        .route("/assets/{file}", get(asset))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require,
        ))
        .with_state(app);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(guarded)
        .layer(axum::middleware::from_fn(security_headers))
}

/// No framing, no sniffing, and nothing fetched from anywhere but this server.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn index(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let site = app
        .sites()
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| "default".into());
    let mut target = format!("/site/{}", page::url_escape(&site));
    let query: Vec<String> = ["model", "from", "to"]
        .iter()
        .filter_map(|k| {
            query
                .get(*k)
                .map(|v| format!("{k}={}", page::url_escape(v)))
        })
        .collect();
    if !query.is_empty() {
        target = format!("{target}?{}", query.join("&"));
    }
    Redirect::to(&target).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        page::html_headers(),
        page::message_page(
            "Not found",
            "There is no such page here. The report is at /.",
        ),
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.css" => (
            include_str!("../../assets/app.css"),
            "text/css; charset=utf-8",
        ),
        "app.js" => (
            include_str!("../../assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return not_found().await,
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// What a page, chart or data request asks for.
pub struct Request {
    pub params: ReportParams,
}

/// Reads `model`, `from` and `to` (all optional) the way `touchstream report` reads its flags.
pub fn parse_request(
    query: &HashMap<String, String>,
    now: OffsetDateTime,
) -> Result<Request, String> {
    let given = |k: &str| query.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let model = match given("model") {
        Some(m) => AttributionModel::parse(m).ok_or_else(|| {
            let all: Vec<&str> = AttributionModel::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown model {m:?}; use one of {}", all.join(", "))
        })?,
        None => AttributionModel::LastNonDirect,
    };
    let to = match given("to") {
        Some(to) => parse_time(to, Bound::End).map_err(|e| format!("to: {e:#}"))?,
        None => now
            .date()
            .next_day()
            .unwrap_or(now.date())
            .midnight()
            .assume_utc(),
    };
    let from = match given("from") {
        Some(from) => parse_time(from, Bound::Start).map_err(|e| format!("from: {e:#}"))?,
        None => to - Days::days(30),
    };
    if from >= to {
        return Err(format!(
            "from ({}) must be before to ({})",
            rfc3339(from),
            rfc3339(to)
        ));
    }
    Ok(Request {
        // The site comes from the path; `App::tables` sets it.
        params: ReportParams {
            site: touchstream_model::DEFAULT_SITE.into(),
            from,
            to,
            model,
        },
    })
}

/// The page's figures from loaded tables; a figure that cannot be built carries the reason.
fn build_figures(
    tables: &Tables,
    params: &ReportParams,
) -> Vec<Result<Figure, (&'static str, String)>> {
    figures::on_page()
        .into_iter()
        .map(|spec| figures::build(spec, tables, params).map_err(|e| (spec.id, e)))
        .collect()
}

/// Why there is nothing to show, or why it failed.
enum Failure {
    /// A 400: the query string.
    BadRequest(String),
    /// The database or its tables do not exist: nothing has been loaded yet.
    NotMigrated(WarehouseError),
    /// ClickHouse did not answer or refused: a banner.
    Warehouse(WarehouseError),
}

impl Failure {
    fn of(error: WarehouseError) -> Self {
        // UNKNOWN_TABLE, UNKNOWN_DATABASE.
        if matches!(error.server_code(), Some(60 | 81)) {
            Self::NotMigrated(error)
        } else {
            Self::Warehouse(error)
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotMigrated(_) => StatusCode::OK,
            Self::Warehouse(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Warehouse(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

async fn site_page(
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let sites = app.sites().await;
    if !sites.contains(&site) {
        return unknown_site(&site, &sites);
    }
    let now = OffsetDateTime::now_utc();
    let mut view = page::View {
        site: &site,
        sites: &sites,
        params: None,
        raw_query: &query,
        today: now.date(),
        clickhouse: &app.cfg.clickhouse,
        banner: None,
        empty: None,
        figures: Vec::new(),
    };
    let request = match parse_request(&query, now) {
        Ok(r) => r,
        Err(e) => {
            view.banner = Some(page::Banner::bad_request(&e));
            return (
                Failure::BadRequest(e).status(),
                page::html_headers(),
                page::render(&view),
            )
                .into_response();
        }
    };
    view.params = Some(&request.params);
    let status = match app.tables(&site, &request.params).await {
        Ok(tables) if tables.is_empty() => {
            view.empty = Some(page::Empty::NoRows {
                extent: app.extent().await,
            });
            StatusCode::OK
        }
        Ok(tables) => {
            view.figures = build_figures(&tables, &request.params);
            StatusCode::OK
        }
        Err(e) => {
            let failure = Failure::of(e);
            let status = failure.status();
            match failure {
                Failure::NotMigrated(e) => {
                    view.empty = Some(page::Empty::NotMigrated(e.to_string()))
                }
                Failure::Warehouse(e) => {
                    view.banner = Some(page::Banner::warehouse(&e, &app.cfg.clickhouse))
                }
                Failure::BadRequest(e) => view.banner = Some(page::Banner::bad_request(&e)),
            }
            tracing::warn!(site, status = status.as_u16(), "page without charts");
            status
        }
    };
    (status, page::html_headers(), page::render(&view)).into_response()
}

fn unknown_site(site: &str, sites: &[String]) -> Response {
    (
        StatusCode::NOT_FOUND,
        page::html_headers(),
        page::message_page(
            "No such site",
            &format!(
                "There is no site {site:?}. The sites are: {}.",
                sites.join(", ")
            ),
        ),
    )
        .into_response()
}

/// The JSON of data and error answers.
fn json_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

/// Loads the page's tables for a data request; the error is the answer to send.
async fn data_for(
    app: &App,
    site: &str,
    query: &HashMap<String, String>,
) -> Result<(Request, Tables), Response> {
    let sites = app.sites().await;
    if !sites.iter().any(|s| s == site) {
        return Err(json_error(
            StatusCode::NOT_FOUND,
            &format!("no site {site:?}"),
        ));
    }
    let request = parse_request(query, OffsetDateTime::now_utc())
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, &e))?;
    match app.tables(site, &request.params).await {
        Ok(tables) => Ok((request, tables)),
        Err(e) => {
            let failure = Failure::of(e);
            match failure {
                // Nothing loaded yet reads as no data.
                Failure::NotMigrated(_) => Ok((request, Tables::default())),
                Failure::Warehouse(e) => Err(json_error(failure_status(&e), &e.to_string())),
                Failure::BadRequest(e) => Err(json_error(StatusCode::BAD_REQUEST, &e)),
            }
        }
    }
}

fn failure_status(e: &WarehouseError) -> StatusCode {
    if e.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    }
}

async fn site_data(
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (request, tables) = match data_for(&app, &site, &query).await {
        Ok(loaded) => loaded,
        Err(response) => return response,
    };
    let p = &request.params;
    let built = build_figures(&tables, p);
    let figures: Vec<serde_json::Value> = built
        .iter()
        .map(|f| match f {
            Ok(figure) => serde_json::to_value(figure).unwrap_or_default(),
            Err((id, e)) => serde_json::json!({ "id": id, "error": e }),
        })
        .collect();
    no_store(axum::Json(serde_json::json!({
        "site": site,
        "model": p.model.as_str(),
        "from": rfc3339(p.from),
        "to": rfc3339(p.to),
        "period": figures::period(p),
        "empty": tables.is_empty(),
        "figures": figures,
    })))
}

async fn chart_file(
    State(app): State<Arc<App>>,
    Path((site, file)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some((id, extension)) = file.rsplit_once('.') else {
        return not_found().await;
    };
    let Some(spec) = figures::by_id(id).filter(|s| s.on_page) else {
        return not_found().await;
    };
    if !matches!(extension, "svg" | "csv" | "json") {
        return not_found().await;
    }
    let (request, tables) = match data_for(&app, &site, &query).await {
        Ok(loaded) => loaded,
        Err(response) => return response,
    };
    let figure = match figures::build(spec, &tables, &request.params) {
        Ok(f) => f,
        Err(e) => return json_error(StatusCode::BAD_GATEWAY, &e),
    };
    match extension {
        "svg" => {
            let width = query
                .get("width")
                .and_then(|w| w.parse::<u32>().ok())
                .unwrap_or(960);
            let inline = query.get("inline").is_some_and(|v| v == "1");
            let svg = chart::render(
                &figure,
                chart::Options {
                    width,
                    standalone: !inline,
                },
            );
            let mut response = no_store(([(header::CONTENT_TYPE, "image/svg+xml")], svg));
            if !inline {
                attachment(&mut response, &file_name(&site, id, &request.params, "svg"));
            }
            response
        }
        "csv" => {
            let mut out = Vec::new();
            if let Err(e) = write_csv(&figure.table, &mut out) {
                return json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
            }
            let mut response = no_store(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out));
            attachment(&mut response, &file_name(&site, id, &request.params, "csv"));
            response
        }
        _ => no_store(axum::Json(figure)),
    }
}

/// `default-source-of-sale-linear-2026-01-01-2026-01-31.csv`
fn file_name(site: &str, id: &str, params: &ReportParams, extension: &str) -> String {
    let period = figures::period(params)
        .replace(" to ", "-")
        .replace([' ', ':', '(', ')'], "");
    let name = format!("{site}-{id}-{}-{period}.{extension}", params.model.as_str());
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn attachment(response: &mut Response, name: &str) {
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use time::macros::datetime;

    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_page_reads_its_period_like_the_report_command() {
        let now = datetime!(2026-03-15 10:00 UTC);
        let r = parse_request(&query(&[]), now).unwrap();
        assert_eq!(
            r.params.to,
            datetime!(2026-03-16 00:00 UTC),
            "today is included"
        );
        assert_eq!(r.params.from, datetime!(2026-02-14 00:00 UTC));
        assert_eq!(r.params.model, AttributionModel::LastNonDirect);

        let r = parse_request(
            &query(&[
                ("from", "2026-01-01"),
                ("to", "2026-01-31"),
                ("model", "linear"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(
            (r.params.from, r.params.to, r.params.model),
            (
                datetime!(2026-01-01 00:00 UTC),
                datetime!(2026-02-01 00:00 UTC),
                AttributionModel::Linear
            )
        );
        // Empty fields are the defaults (a form submitted with a blank date).
        let r = parse_request(&query(&[("from", ""), ("model", "")]), now).unwrap();
        assert_eq!(r.params.from, datetime!(2026-02-14 00:00 UTC));

        let e = parse_request(&query(&[("model", "u-shaped")]), now)
            .err()
            .unwrap();
        assert!(e.contains("position_based"), "{e}");
        let e = parse_request(&query(&[("from", "yesterday")]), now)
            .err()
            .unwrap();
        assert!(e.contains("from"), "{e}");
        let e = parse_request(&query(&[("from", "2026-02-01"), ("to", "2026-01-01")]), now)
            .err()
            .unwrap();
        assert!(e.contains("must be before"), "{e}");
    }

    #[test]
    fn file_names_say_what_is_in_them() {
        let params = ReportParams {
            site: "default".into(),
            from: datetime!(2026-01-01 00:00 UTC),
            to: datetime!(2026-02-01 00:00 UTC),
            model: AttributionModel::Linear,
        };
        assert_eq!(
            file_name("default", "posts", &params, "csv"),
            "default-posts-linear-2026-01-01-2026-01-31.csv"
        );
    }

    #[test]
    fn the_defaults_read_as_the_reader_on_port_8090_without_a_password() {
        let cfg = ServeConfig::default();
        assert_eq!(cfg.listen, "127.0.0.1:8090");
        assert_eq!(cfg.clickhouse.user, "touchstream_reader");
        assert!(cfg.auth.password.is_empty());
    }
}
