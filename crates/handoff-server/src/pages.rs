//! The pages people open: the events list (`/`), the live page (`/e/{event}`), the operator
//! console (`/e/{event}/console`) and the carrier page (`/carrier`), with their assets under
//! `/assets/`. Everything is embedded at build time (see `build.rs`): our own HTML, CSS and
//! JavaScript from `web/src/`, and Leaflet, topojson-client and the world basemap from npm.
//!
//! The pages are static files that read the JSON API and the live stream; the server renders
//! nothing into them. The small routes here exist only for the pages: a QR code for the
//! console (rendered here so the page needs no QR library), a check of the admin token the
//! console was given, "who am I" for a carrier's device token, and the organiser's street
//! basemap (`/basemap.pmtiles`, a PMTiles file given to `handoff serve --basemap`, read by the
//! pages with range requests; see [`Basemap`]).

use std::collections::HashMap;
use std::path::{Path as FilePath, PathBuf};
use std::sync::{Arc, LazyLock, OnceLock};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::events::read_body;
use crate::app::AppState;
use crate::auth::bearer;
use crate::error::{ApiError, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// What the pages may load: only this server, except map tiles (a tile URL can be configured,
/// and is off by default), and inline styles, which Leaflet sets on its elements.
const CSP: &str = "default-src 'self'; script-src 'self'; connect-src 'self'; \
    img-src 'self' data: https: http:; style-src 'self' 'unsafe-inline'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The longest text the console turns into a QR code (an OsmAnd URL with a token is ~100).
const MAX_QR_TEXT: usize = 1024;

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
    /// From an npm package (pinned by the lockfile): cached for a day. Our own files are
    /// revalidated on every load (`no-cache` + ETag), so a new binary never mixes old modules
    /// with new ones.
    vendor: bool,
    /// The body gzip-compressed (text only), made at the first request that accepts it, and
    /// its own ETag (another representation of the same file).
    gzip: Option<(OnceLock<Bytes>, HeaderValue)>,
}

/// The gzip level of assets: compressed once per process, so the best one.
const ASSET_GZIP_LEVEL: u32 = 9;

/// Whether the request accepts a gzip-encoded answer (`q=0` refuses it); `/live` asks too.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|q| matches!(q.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (name == "gzip" || name == "*") && !refused
        })
}

static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    use sha2::Digest;
    embedded::ASSETS
        .iter()
        .map(|(path, body)| {
            let hash = hex::encode(&sha2::Sha256::digest(body)[..12]);
            let etag = HeaderValue::from_str(&format!("\"{hash}\""))
                .unwrap_or(HeaderValue::from_static("\"0\""));
            let content_type = content_type(path);
            let compressible = !content_type.starts_with("image/png");
            let gzip = compressible.then(|| {
                let tag = HeaderValue::from_str(&format!("\"{hash}-gzip\""))
                    .unwrap_or(HeaderValue::from_static("\"0-gzip\""));
                (OnceLock::new(), tag)
            });
            let asset = Asset {
                body,
                content_type,
                etag,
                vendor: path.starts_with("vendor/"),
                gzip,
            };
            (*path, asset)
        })
        .collect()
});

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

/// The pages and their assets, merged into the app's router.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    /// `/assets/{*path}` takes slashes, which an OpenAPI path parameter cannot say: it is
    /// mounted by hand and described as `/assets/{path}`.
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(asset))]
    struct Assets;

    OpenApiRouter::with_openapi(<Assets as utoipa::OpenApi>::openapi())
        .routes(routes!(index))
        .routes(routes!(live))
        .routes(routes!(console))
        .routes(routes!(carrier))
        .route("/assets/{*path}", get(asset))
        .routes(routes!(session))
        .routes(routes!(qr))
        .routes(routes!(me))
        .routes(routes!(basemap))
        .routes(routes!(basemap_info))
}

/// The organiser's street basemap: a PMTiles archive (vector tiles in the Protomaps basemap
/// schema, e.g. a city extract cut from a Protomaps build with `pmtiles extract`), set once at
/// start. The pages draw it above the built-in world basemap, which stays beneath it where the
/// extract has no tiles and whenever it cannot be loaded.
#[derive(Debug, Default)]
pub struct Basemap(OnceLock<PathBuf>);

impl Basemap {
    /// Serves `path` from now on, once [`check_basemap`] accepts it.
    ///
    /// # Errors
    /// What is wrong with the file, naming it; or that a basemap is set already.
    pub fn serve(&self, path: &FilePath) -> std::result::Result<(), String> {
        check_basemap(path)?;
        self.0
            .set(path.to_path_buf())
            .map_err(|_| "a basemap is already being served".to_owned())
    }
}

/// Whether `path` is a PMTiles archive of version 3 (its first bytes say so).
///
/// # Errors
/// Why not, naming the file.
pub fn check_basemap(path: &FilePath) -> std::result::Result<(), String> {
    use std::io::Read as _;
    let shown = path.display();
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("{shown}: cannot read the basemap: {e}"))?;
    match (&head[..7], head[7]) {
        (b"PMTiles", 3) => Ok(()),
        (b"PMTiles", v) => Err(format!(
            "{shown}: PMTiles version {v}; the pages read version 3 (convert it with `pmtiles convert`)"
        )),
        _ => Err(format!(
            "{shown}: not a PMTiles file (it does not start with \"PMTiles\")"
        )),
    }
}

/// `GET /basemap` → `{"pmtiles": "/basemap.pmtiles"}`, or `{"pmtiles": null}` when the server
/// has no street basemap: what the pages ask first (so a server without one costs them no
/// failed request).
#[utoipa::path(
    get,
    path = "/basemap",
    tag = "pages",
    responses((status = 200, description = "Where the street basemap is, if there is one", body = Object))
)]
async fn basemap_info(State(state): State<Arc<AppState>>) -> Response {
    let url = state.basemap.0.get().map(|_| "/basemap.pmtiles");
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(json!({ "pmtiles": url })),
    )
        .into_response()
}

/// `GET /basemap.pmtiles`: the street basemap, with range requests (as the pages read it),
/// `Last-Modified` revalidation and an hour of caching; 404 when none is set.
#[utoipa::path(
    get,
    path = "/basemap.pmtiles",
    tag = "pages",
    responses(
        (status = 200, description = "The whole PMTiles archive", content_type = "application/vnd.pmtiles", body = String),
        (status = 206, description = "The byte range asked for"),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No basemap is served (start with `handoff serve --basemap FILE.pmtiles`)")
    )
)]
async fn basemap(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let Some(path) = state.basemap.0.get() else {
        return ApiError::not_found(
            "no basemap is served here (start the server with --basemap FILE.pmtiles)",
        )
        .into_response();
    };
    let served = tower_http::services::ServeFile::new(path)
        .oneshot(request)
        .await;
    match served {
        Ok(mut response) => {
            let headers = response.headers_mut();
            if headers.contains_key(header::CONTENT_TYPE) {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/vnd.pmtiles"),
                );
            }
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            response.map(Body::new)
        }
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("reading the basemap: {e}"),
        )
        .into_response(),
    }
}

/// An embedded HTML page with the headers every page gets.
fn page(name: &str, status: StatusCode) -> Response {
    let Some(a) = ASSETS.get(name) else {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    };
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            // The carrier page may be opened with `?token=`: never send it on as a referrer.
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        a.body,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    responses((status = 200, description = "The events list page", content_type = "text/html", body = String))
)]
async fn index() -> Response {
    page("index.html", StatusCode::OK)
}

/// The live page; an unknown event still gets the page (it says so), with a 404 status.
#[utoipa::path(
    get,
    path = "/e/{event}",
    operation_id = "live_page",
    tag = "pages",
    params(("event" = String, Path, description = "The event id")),
    responses((status = 200, description = "The live page", content_type = "text/html", body = String), (status = 404, description = "The live page, saying the event is unknown", content_type = "text/html", body = String))
)]
async fn live(State(state): State<Arc<AppState>>, Path(event): Path<String>) -> Response {
    let status = if state.event(&event).is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    page("live.html", status)
}

#[utoipa::path(
    get,
    path = "/e/{event}/console",
    tag = "pages",
    params(("event" = String, Path, description = "The event id")),
    responses((status = 200, description = "The operator console", content_type = "text/html", body = String), (status = 404, description = "The console, saying the event is unknown", content_type = "text/html", body = String))
)]
async fn console(State(state): State<Arc<AppState>>, Path(event): Path<String>) -> Response {
    let status = if state.event(&event).is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    page("console.html", status)
}

#[utoipa::path(
    get,
    path = "/carrier",
    tag = "pages",
    responses((status = 200, description = "The carrier page", content_type = "text/html", body = String))
)]
async fn carrier() -> Response {
    page("carrier.html", StatusCode::OK)
}

/// `GET /assets/{path}`, with ETag revalidation.
#[utoipa::path(
    get,
    path = "/assets/{path}",
    tag = "pages",
    params(("path" = String, Path, description = "The asset's path, slashes included")),
    responses((status = 200, description = "An embedded asset (ETag revalidation)", content_type = "application/octet-stream", body = String), (status = 304, description = "Not modified"))
)]
async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(a) = ASSETS.get(path.as_str()) else {
        return ApiError::not_found(format!("no asset `{path}`")).into_response();
    };
    let cache = HeaderValue::from_static(if a.vendor {
        "public, max-age=86400"
    } else {
        "no-cache"
    });
    let gzip = a.gzip.as_ref().filter(|_| accepts_gzip(&headers));
    let etag = gzip.map_or(&a.etag, |(_, tag)| tag);
    let vary = (header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if headers.get(header::IF_NONE_MATCH) == Some(etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag.clone()),
                (header::CACHE_CONTROL, cache),
                vary,
            ],
        )
            .into_response();
    }
    let common = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        ),
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, cache),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        vary,
    ];
    match gzip {
        Some((body, _)) => {
            let body = body
                .get_or_init(|| Bytes::from(crate::engine::gzip(a.body, ASSET_GZIP_LEVEL)))
                .clone();
            (
                common,
                [(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))],
                body,
            )
                .into_response()
        }
        None => (common, a.body).into_response(),
    }
}

/// `GET /console/session` → `{"admin": bool}`: whether the bearer token is the admin token,
/// so the console can tell a mistyped token at once (a 200 either way: a wrong guess is an
/// answer here, not an error).
#[utoipa::path(
    get,
    path = "/console/session",
    tag = "pages",
    responses((status = 200, description = "Whether the bearer token is the admin token", body = crate::api::openapi::Session))
)]
async fn session(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "admin": state.admin.matches(&headers) })),
    )
        .into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
struct QrBody {
    text: String,
}

/// `POST /console/qr` (admin) `{"text": "…"}` → the text as a QR code, SVG. Admin only and
/// never cached: the text is a device's token.
#[utoipa::path(
    post,
    path = "/console/qr",
    tag = "pages",
    request_body = QrBody,
    security(("admin" = [])),
    responses((status = 200, description = "The text as a QR code", content_type = "image/svg+xml", body = String))
)]
async fn qr(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    state.admin.require(&headers)?;
    let bytes: Bytes = read_body(body, MAX_QR_TEXT * 2).await?;
    let b: QrBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("expected {{\"text\":\"…\"}}: {e}"),
        )
    })?;
    if b.text.is_empty() || b.text.len() > MAX_QR_TEXT {
        return Err(ApiError::bad_request(
            "invalid_value",
            format!("text is 1 to {MAX_QR_TEXT} bytes"),
        )
        .field("text"));
    }
    let svg = qr_svg(&b.text)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

/// A QR code as SVG: black on white with the standard quiet zone (phone cameras need it).
fn qr_svg(text: &str) -> Result<String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| {
            ApiError::bad_request("invalid_value", format!("cannot encode as a QR code: {e}"))
                .field("text")
        })?;
    Ok(code
        .render()
        .min_dimensions(232, 232)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// `GET /carrier/me` (device token) → `{"event","device","carrier","last_fix"}`: the carrier
/// page is given only a token, and learns from it which event and carrier it reports for, and
/// when this device's newest fix was taken (by any app on the phone: the page warns its carrier
/// when nothing is being shared while they hold the object).
#[utoipa::path(
    get,
    path = "/carrier/me",
    tag = "pages",
    security(("device" = [])),
    responses((status = 200, description = "The device token's event, device, carrier and newest fix", body = crate::api::openapi::Me))
)]
async fn me(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response> {
    let token = bearer(&headers).ok_or_else(|| {
        ApiError::unauthorized("send the device token: Authorization: Bearer <token>")
    })?;
    let device = state
        .device_by_token(token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown device token"))?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "event": device.event_id,
            "device": device.device_id,
            "carrier": device.carrier,
            "last_fix": state.last_fixes.of(&device.event_id, &device.device_id),
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_the_pages_and_the_vendored_files() {
        for path in [
            "index.html",
            "live.html",
            "console.html",
            "carrier.html",
            "vendor/leaflet/leaflet.js",
            "vendor/leaflet/leaflet.css",
            "vendor/topojson-client.min.js",
            "vendor/world-atlas/countries-110m.json",
            "vendor/protomaps-leaflet/protomaps-leaflet.js",
        ] {
            assert!(ASSETS.contains_key(path), "{path} is not embedded");
        }
        assert!(
            ASSETS.keys().all(|p| !p.contains("node_modules")),
            "only the listed npm files are embedded"
        );
    }

    #[test]
    fn gzip_is_accepted_as_http_says() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_gzip(&h)
        };
        assert!(with("gzip"));
        assert!(with("br, gzip;q=0.8, deflate"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn assets_go_gzip_compressed_to_who_accepts_it_with_their_own_etag() {
        use std::io::Read as _;
        let get = |accept: Option<&'static str>, etag: Option<HeaderValue>| {
            let mut h = HeaderMap::new();
            if let Some(a) = accept {
                h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(a));
            }
            if let Some(e) = etag {
                h.insert(header::IF_NONE_MATCH, e);
            }
            asset(Path("vendor/world-atlas/countries-50m.json".to_owned()), h)
        };
        let plain = get(None, None).await;
        assert_eq!(plain.headers().get(header::CONTENT_ENCODING), None);
        let plain_tag = plain.headers().get(header::ETAG).cloned().expect("an ETag");
        let raw = axum::body::to_bytes(plain.into_body(), usize::MAX)
            .await
            .expect("a body");

        let zipped = get(Some("gzip, deflate, br"), None).await;
        assert_eq!(
            zipped
                .headers()
                .get(header::CONTENT_ENCODING)
                .map(|v| v.as_bytes()),
            Some(&b"gzip"[..])
        );
        assert_eq!(
            zipped.headers().get(header::VARY).map(|v| v.as_bytes()),
            Some(&b"Accept-Encoding"[..])
        );
        let tag = zipped
            .headers()
            .get(header::ETAG)
            .cloned()
            .expect("an ETag");
        assert_ne!(tag, plain_tag, "two representations, two ETags");
        let body = axum::body::to_bytes(zipped.into_body(), usize::MAX)
            .await
            .expect("a body");
        assert!(
            body.len() * 2 < raw.len(),
            "{} of {} bytes",
            body.len(),
            raw.len()
        );
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut unzipped)
            .expect("gzip");
        assert_eq!(unzipped, raw);
        // Revalidation by each representation's own tag.
        assert_eq!(
            get(Some("gzip"), Some(tag.clone())).await.status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(get(None, Some(tag)).await.status(), StatusCode::OK);
        assert_eq!(
            get(None, Some(plain_tag)).await.status(),
            StatusCode::NOT_MODIFIED
        );
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("js/live.js"), "text/javascript; charset=utf-8");
        assert_eq!(
            content_type("vendor/world-atlas/countries-110m.json"),
            "application/json"
        );
        assert_eq!(content_type("icon.svg"), "image/svg+xml");
        assert_eq!(content_type("README"), "application/octet-stream");
    }

    #[test]
    fn qr_code_is_an_svg_image() {
        let svg = qr_svg("http://127.0.0.1:8080/osmand?id=0123456789abcdef").unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..40]);
        assert!(svg.contains("<svg"));
        assert!(svg.contains("#000000"));
    }
}
