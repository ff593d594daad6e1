//! Cases on the patient portal: the security headers of its pages, and the development sign-in,
//! which a production deployment must not offer. Both need no credentials: they look at what
//! anyone on the network can reach.

use crate::case::{check, verdict, Case, Context, Failure, Level, Outcome};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "POR-01",
            title: "Portal pages carry a strict Content-Security-Policy and no inline code",
            level: Level::Shall,
            reference: "Vaitio #20: Security (headers)",
            needs: &[],
            run: portal_headers,
        },
        Case {
            id: "POR-02",
            title: "The development sign-in is offered only under its banner, and signs nobody in without its form",
            level: Level::Shall,
            reference: "Vaitio #20: Sign-in (development mode only)",
            needs: &[],
            run: development_sign_in,
        },
    ]
}

fn portal_headers(ctx: &Context) -> Result<Outcome, Failure> {
    let answer = ctx.client.send("GET", "/portal/login", &[("Accept", "text/html")], None)?;
    verdict((|| {
        check(answer.status == 200, || format!("GET /portal/login answered {}", answer.status))?;
        let header = |name: &str| answer.header(name).unwrap_or("").to_owned();
        let csp = header("content-security-policy");
        for directive in ["default-src 'self'", "frame-ancestors 'none'"] {
            check(csp.contains(directive), || format!("Content-Security-Policy lacks {directive}: '{csp}'"))?;
        }
        check(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), || {
            format!("Content-Security-Policy allows inline code: '{csp}'")
        })?;
        check(header("x-content-type-options") == "nosniff", || "X-Content-Type-Options is not nosniff".into())?;
        check(header("referrer-policy") == "no-referrer", || "Referrer-Policy is not no-referrer".into())?;
        check(header("cache-control").contains("no-store"), || "Cache-Control lacks no-store".into())?;
        let html = answer.text();
        let inline_scripts = html.split("<script").skip(1).filter(|tag| !tag.trim_start().starts_with("src=")).count();
        check(inline_scripts == 0, || format!("{inline_scripts} inline script element(s)"))?;
        check(!html.contains(" style=") && !html.contains("<style"), || "inline style".into())?;
        check(html.contains("<html lang=\""), || "the page declares no lang".into())?;
        Ok("CSP without inline code, nosniff, no-referrer, no-store".into())
    })())
}

fn development_sign_in(ctx: &Context) -> Result<Outcome, Failure> {
    let page = ctx.client.send("GET", "/portal/login", &[("Accept", "text/html")], None)?;
    let post = ctx.client.send(
        "POST",
        "/portal/login/dev",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(b"hetu=131052-308T"),
    )?;
    verdict((|| {
        let html = page.text();
        let offered = html.contains("action=\"/portal/login/dev\"");
        let session =
            post.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v.contains("vaitio-session="));
        check(!session, || "a sign-in without the form's token started a session".into())?;
        if offered {
            check(html.contains("class=\"banner\""), || {
                "the development sign-in is offered without its banner".into()
            })?;
            check(post.status == 403, || format!("a sign-in without the form's token answered {}", post.status))?;
            Ok("development mode: the form is offered under its banner and needs its token".into())
        } else {
            check(post.status == 404, || format!("POST /portal/login/dev answered {} (production: 404)", post.status))?;
            Ok("production: no development sign-in (404)".into())
        }
    })())
}
