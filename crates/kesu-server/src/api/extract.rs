//! Reading a JSON request body with every failure mapped to an [`ApiError`]:
//! wrong content type (415), body over the limit (413, checked while reading,
//! so an oversized body is never buffered whole), invalid UTF-8 (400), broken
//! JSON (400), well-formed JSON of the wrong shape or types (422).

use actix_web::{web, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};

/// Read and parse the body of `req` as `T`.
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let ct = req.content_type();
    if !ct.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::unsupported_media_type(ct));
    }
    if let Ok(Some(charset)) =
        req.mime_type().map(|m| m.and_then(|m| m.get_param("charset").map(|c| c.as_str().to_ascii_lowercase())))
    {
        if charset != "utf-8" && charset != "utf8" {
            return Err(ApiError::unsupported_media_type(&format!("{ct}; charset={charset}")));
        }
    }
    if let Some(len) =
        req.headers().get(actix_web::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ApiError::body_too_large(limit));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_json(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::body_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    parse_json(&body)
}

/// Parse bytes as JSON `T` with the error mapping of [`read_json`].
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ApiError::invalid_utf8(e.valid_up_to()));
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_json("request body is empty; expected a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::new(ErrorCode::InvalidRequest, e.to_string()),
            // serde_json reports some type errors as syntax errors (a number
            // where an enum's string goes: "expected value"): when the body
            // is well-formed JSON, it is the shape that is wrong, so 422.
            Category::Syntax if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => {
                ApiError::new(ErrorCode::InvalidRequest, format!("wrong type or shape: {e}"))
            }
            Category::Syntax | Category::Eof | Category::Io => ApiError::bad_json(format!("broken JSON: {e}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        text: String,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Colour {
        Red,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct E {
        colour: Colour,
    }

    #[test]
    fn error_kinds() {
        assert_eq!(parse_json::<T>(b"{\"text\": \"ok\"}").unwrap().text, "ok");
        assert_eq!(parse_json::<T>(b"{\"text\": ").unwrap_err().code().as_str(), "invalid_json");
        assert_eq!(parse_json::<T>(b"{text}").unwrap_err().code().as_str(), "invalid_json");
        assert_eq!(parse_json::<T>(b"").unwrap_err().code().as_str(), "invalid_json");
        assert_eq!(parse_json::<T>(b"{\"text\": 5}").unwrap_err().code().as_str(), "invalid_request");
        assert_eq!(parse_json::<T>(b"{}").unwrap_err().code().as_str(), "invalid_request");
        assert_eq!(parse_json::<T>(b"{\"text\": \"\xff\xfe\"}").unwrap_err().code().as_str(), "invalid_utf8");
    }

    /// A wrong JSON type where an enum goes is the request's shape (422), not broken JSON (400).
    #[test]
    fn enum_type_errors_are_422() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"colour\": \"red\"}", "ok"),
            (b"{\"colour\": 5}", "invalid_request"),
            (b"{\"colour\": true}", "invalid_request"),
            (b"{\"colour\": null}", "invalid_request"),
            (b"{\"colour\": [1]}", "invalid_request"),
            (b"{\"colour\": \"blue\"}", "invalid_request"),
            (b"{\"colour\": 5", "invalid_json"),
            (b"{\"colour\": tru}", "invalid_json"),
        ];
        for (body, want) in cases {
            let got = match parse_json::<E>(body) {
                Ok(e) => {
                    assert_eq!(e.colour, Colour::Red);
                    "ok"
                }
                Err(e) => e.code().as_str(),
            };
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(body));
        }
    }
}
