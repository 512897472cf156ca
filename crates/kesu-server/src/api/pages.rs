//! The console pages (`/console`, `/review`, `/insights`): static HTML with the script
//! they share (`pages/shared.js`) put in at its `/*SHARED*/` mark, once.
//!
//! Each page is answered with a Content-Security-Policy that allows exactly
//! its own inline `<script>` and `<style>` blocks (by SHA-256 hash), fetches
//! to its own origin, and no framing ([`Page::respond`]).

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::HttpResponse;
use base64::Engine;
use sha2::{Digest, Sha256};

const SHARED_JS: &str = include_str!("pages/shared.js");

fn assemble(page: &str) -> String {
    assert!(page.contains("/*SHARED*/"), "a console page lacks its /*SHARED*/ mark");
    page.replacen("/*SHARED*/", SHARED_JS, 1)
}

/// A page with its policy.
pub struct Page {
    pub html: String,
    pub csp: String,
}

impl std::ops::Deref for Page {
    type Target = str;
    fn deref(&self) -> &str {
        &self.html
    }
}

impl Page {
    fn new(html: String) -> Page {
        let csp = content_security_policy(&html);
        Page { html, csp }
    }

    /// The page as a 200 with its CSP, no framing, no MIME sniffing, no referrer.
    pub fn respond(&self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, self.csp.as_str()))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(self.html.clone())
    }
}

/// `'sha256-…'` sources of every inline block `<tag>…</tag>` of `html`.
fn inline_hashes(html: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i + open.len()..];
        let Some(j) = body.find(&close) else { break };
        let digest = Sha256::digest(&body.as_bytes()[..j]);
        out.push(format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest)));
        rest = &body[j + close.len()..];
    }
    out
}

/// The policy of a page: nothing by default; its own inline scripts and
/// styles by hash; fetches (API calls, the event stream) and images to its own origin.
pub fn content_security_policy(html: &str) -> String {
    let scripts = inline_hashes(html, "script").join(" ");
    let styles = inline_hashes(html, "style").join(" ");
    format!(
        "default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self'; img-src 'self' data:; \
         font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// The agent console page.
pub static CONSOLE: LazyLock<Page> = LazyLock::new(|| Page::new(assemble(include_str!("pages/console.html"))));
/// The insights console page.
pub static INSIGHTS: LazyLock<Page> = LazyLock::new(|| Page::new(assemble(include_str!("pages/insights.html"))));
/// The review console page.
pub static REVIEW: LazyLock<Page> = LazyLock::new(|| Page::new(assemble(include_str!("pages/review.html"))));

#[cfg(test)]
mod tests {
    #[test]
    fn both_pages_carry_the_shared_script() {
        for p in [&*super::CONSOLE, &*super::REVIEW, &*super::INSIGHTS] {
            assert!(p.contains("function highlighted(") && p.contains("function useKey(") && !p.contains("/*SHARED*/"));
        }
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_blocks() {
        let html = "<style>a{}</style><p>x</p><script>let a = 1;</script><script>f()</script>";
        let csp = super::content_security_policy(html);
        // sha256("let a = 1;") and sha256("f()") and sha256("a{}"), base64
        let h = |s: &str| {
            use base64::Engine;
            use sha2::Digest;
            format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s)))
        };
        assert!(csp.contains(&format!("script-src {} {};", h("let a = 1;"), h("f()"))), "{csp}");
        assert!(csp.contains(&format!("style-src {};", h("a{}"))), "{csp}");
        assert!(csp.starts_with("default-src 'none';") && csp.contains("frame-ancestors 'none'"), "{csp}");
        for p in [&*super::CONSOLE, &*super::REVIEW, &*super::INSIGHTS] {
            assert_eq!(super::inline_hashes(p, "script").len(), p.matches("<script>").count());
            assert!(
                !p.contains("<script src") && !p.contains(" onclick="),
                "an external or handler script would be blocked"
            );
        }
    }
}
