//! The page's files, embedded in the binary (served offline, no CDN).

/// An embedded file: its content type and bytes.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// The HTML shell every page path answers with (no data in it; the script fills it).
pub const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("assets/index.html"),
};

/// The embedded file served at `/assets/NAME`.
pub fn get(name: &str) -> Option<Asset> {
    Some(match name {
        "app.js" => Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!("assets/app.js"),
        },
        "app.css" => Asset {
            content_type: "text/css; charset=utf-8",
            body: include_bytes!("assets/app.css"),
        },
        _ => return None,
    })
}
