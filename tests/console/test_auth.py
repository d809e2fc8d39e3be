"""Who may use the console, and what may change: the token, the login cookie, CSRF,
read-only mode and the security headers, in-process on SQLite."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from fastapi.routing import APIRoute

from kern.console import api, create_app, pages
from kern.console.auth import COOKIE, Keys
from kern.console.deps import change_allowed, csrf_checked
from kern.db import AsyncBaseDb
from kern.records import LearningStatus


async def test_a_request_without_the_token_is_refused(
    sqlite_db: AsyncBaseDb, client: Any, kit: ModuleType
) -> None:
    ids = (await kit.seed(sqlite_db)).ids
    app = create_app(db=sqlite_db, token=kit.TOKEN)
    async with client(app) as anonymous:
        for path in ("/api/health", "/api/sessions", f"/api/sessions/{ids['chat']}"):
            refused = await anonymous.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer" in refused.json()["detail"]
        assert (await anonymous.get("/api/openapi.json")).status_code == 401
        wrong = await anonymous.get("/api/sessions", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    async with client(app, cookies={COOKIE: kit.TOKEN}) as token_as_cookie:
        # the cookie holds an HMAC of the token: the token itself is no cookie
        assert (await token_as_cookie.get("/api/sessions")).status_code == 401
    async with client(app) as anonymous:
        changed = await anonymous.post(f"/api/proposals/{ids['veggie']}/approve")
        assert changed.status_code == 401

        # a page: 401 with the login form, none of the data
        for path in ("/sessions", f"/sessions/{ids['chat']}", "/users/ada", "/proposals"):
            page = await anonymous.get(path)
            assert page.status_code == 401, path
            assert 'action="/login"' in page.text and 'name="token"' in page.text
            assert "question 0" not in page.text and "green tea" not in page.text
            assert "vegetarian" not in page.text and "Ada" not in page.text
            assert "csrf-token" not in page.text
        # the form returns to the page asked for, as a path of this server
        spaced = await anonymous.get("/users/ada lovelace", params={"q": "tea"})
        assert 'name="next" value="/users/ada%20lovelace?q=tea"' in spaced.text
        # the login page itself and the package's static files need no token
        assert (await anonymous.get("/login")).status_code == 200
        assert (await anonymous.get("/static/console.css")).status_code == 200
    proposal = await sqlite_db.get_learning(ids["veggie"])
    assert proposal is not None and proposal.status is LearningStatus.PROPOSED


async def test_login_sets_an_http_only_strict_cookie(
    sqlite_db: AsyncBaseDb, client: Any, kit: ModuleType
) -> None:
    await kit.seed(sqlite_db)
    app = create_app(db=sqlite_db, token=kit.TOKEN)
    async with client(app) as browser:
        bad = await browser.post("/login", data={"token": "guess", "next": "/proposals"})
        assert bad.status_code == 401 and "not the console" in bad.text
        assert COOKIE not in bad.cookies

        good = await browser.post("/login", data={"token": kit.TOKEN, "next": "/proposals"})
        assert good.status_code == 303 and good.headers["location"] == "/proposals"
        cookie = good.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert kit.TOKEN not in cookie
        page = await browser.get("/proposals")
        assert page.status_code == 200 and "Ada is vegetarian" in page.text

        # a login never sends the browser to another site
        for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/\t/evil"):
            away = await browser.post("/login", data={"token": kit.TOKEN, "next": target})
            assert away.headers["location"] == "/sessions", target

        out = await browser.post("/logout", data={"csrf": Keys(kit.TOKEN).csrf})
        assert out.status_code == 303
        assert (await browser.get("/proposals")).status_code == 401


async def test_posts_from_the_browser_need_the_csrf_value(
    sqlite_db: AsyncBaseDb, client: Any, kit: ModuleType
) -> None:
    ids = (await kit.seed(sqlite_db)).ids
    app = create_app(db=sqlite_db, token=kit.TOKEN)
    csrf = Keys(kit.TOKEN).csrf
    async with client(app, cookies={COOKIE: Keys(kit.TOKEN).cookie}) as browser:
        page = await browser.get("/proposals")
        assert f'name="csrf" value="{csrf}"' in page.text

        url = f"/proposals/{ids['veggie']}/approve"
        for form in ({}, {"csrf": "wrong"}, {"csrf": kit.TOKEN}):
            refused = await browser.post(url, data=form)
            assert refused.status_code == 403 and "CSRF" in refused.text
        api = f"/api/proposals/{ids['seat']}/reject"
        refused = await browser.post(api, headers={"X-CSRF-Token": "wrong"})
        assert refused.status_code == 403
        # even with the Bearer header: a request carrying the cookie is a browser's
        both = await browser.post(api, headers=kit.BEARER)
        assert both.status_code == 403
        # another origin is refused whatever it carries
        other = await browser.post(
            url, data={"csrf": csrf}, headers={"Origin": "http://evil.example"}
        )
        assert other.status_code == 403 and "another origin" in other.text
        untouched = await sqlite_db.get_learning(ids["veggie"])
        assert untouched is not None and untouched.status is LearningStatus.PROPOSED

        done = await browser.post(url, data={"csrf": csrf})
        assert done.status_code == 303
        assert done.headers["location"] == f"/proposals?approved={ids['veggie']}"
        assert (await browser.post(api, headers={"X-CSRF-Token": csrf})).status_code == 200

    # an API client with the Bearer header and no cookie is exempt: no site can forge it
    async with client(app, headers=kit.BEARER) as script:
        insight = await script.post(f"/api/proposals/{ids['insight']}/reject")
        assert insight.status_code == 200


async def test_read_only_refuses_every_change(
    sqlite_db: AsyncBaseDb, client: Any, kit: ModuleType
) -> None:
    ids = (await kit.seed(sqlite_db)).ids
    app = create_app(db=sqlite_db, token=kit.TOKEN, read_only=True)
    csrf = Keys(kit.TOKEN).csrf
    async with client(app, headers=kit.BEARER) as bearer:
        assert (await bearer.get("/api/health")).json()["read_only"] is True
        for path in (
            f"/api/proposals/{ids['veggie']}/approve",
            f"/api/proposals/{ids['seat']}/reject",
            "/api/users/ada/forget",
        ):
            refused = await bearer.post(path)
            assert refused.status_code == 403, path
            assert "read-only" in refused.json()["detail"]
        proposals = await bearer.get("/proposals")
        assert "Ada is vegetarian" in proposals.text
        assert "<button" not in proposals.text.split('class="proposals"')[1]
        assert "Read-only" in proposals.text
        assert 'action="/forget/' not in (await bearer.get("/forget/ada")).text
        assert "Forget this user" not in (await bearer.get("/users/ada")).text
    async with client(app, cookies={COOKIE: Keys(kit.TOKEN).cookie}) as browser:
        page = await browser.post("/forget/ada", data={"csrf": csrf, "confirm": "ada"})
        assert page.status_code == 403 and "read-only" in page.text
        # logging out changes no data: it still works
        assert (await browser.post("/logout", data={"csrf": csrf})).status_code == 303
    assert len(await sqlite_db.list_memories("ada")) == 2
    proposal = await sqlite_db.get_learning(ids["veggie"])
    assert proposal is not None and proposal.status is LearningStatus.PROPOSED


def test_every_post_route_is_guarded() -> None:
    routes = [r for r in (*api.router.routes, *pages.router.routes) if isinstance(r, APIRoute)]
    posts = [r for r in routes if "POST" in (r.methods or ())]
    assert len(posts) >= 8
    for route in posts:
        if route.path == "/login":
            continue  # it checks the token itself, and sets no data
        guards = {d.call for d in route.dependant.dependencies}
        expected = csrf_checked if route.path == "/logout" else change_allowed
        assert expected in guards, route.path
    for route in routes:
        assert (route.methods or set()) <= {"GET", "POST"}, route.path


async def test_security_headers_and_errors(
    sqlite_db: AsyncBaseDb, client: Any, kit: ModuleType
) -> None:
    await kit.seed(sqlite_db)
    app = create_app(db=sqlite_db, token=kit.TOKEN)
    async with client(app) as anonymous:
        refused = await anonymous.get("/sessions")
        for response in (refused, await anonymous.get("/login")):
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-content-type-options"] == "nosniff"
    async with client(app, headers=kit.BEARER) as bearer:
        long_id = await bearer.get(f"/api/users/{'u' * 300}/memories")
        assert long_id.status_code == 400 and "255" in long_id.json()["detail"]
        assert (await bearer.get("/api/sessions", params={"limit": 0})).status_code == 422
        missing = await bearer.get("/sessions/nope")
        assert missing.status_code == 404 and "no session" in missing.text


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        Keys("short")
