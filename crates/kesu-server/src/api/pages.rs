//! The two console pages (`/console`, `/review`): static HTML with the script
//! they share (`pages/shared.js`) put in at its `/*SHARED*/` mark, once.

use std::sync::LazyLock;

const SHARED_JS: &str = include_str!("pages/shared.js");

fn assemble(page: &str) -> String {
    assert!(page.contains("/*SHARED*/"), "a console page lacks its /*SHARED*/ mark");
    page.replacen("/*SHARED*/", SHARED_JS, 1)
}

/// The agent console page.
pub static CONSOLE: LazyLock<String> = LazyLock::new(|| assemble(include_str!("pages/console.html")));
/// The review console page.
pub static REVIEW: LazyLock<String> = LazyLock::new(|| assemble(include_str!("pages/review.html")));

#[cfg(test)]
mod tests {
    #[test]
    fn both_pages_carry_the_shared_script() {
        for p in [&*super::CONSOLE, &*super::REVIEW] {
            assert!(p.contains("function highlighted(") && p.contains("function useKey(") && !p.contains("/*SHARED*/"));
        }
    }
}
