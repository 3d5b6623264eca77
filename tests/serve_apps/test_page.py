"""The web page at `/`, in a real headless Chromium (DevTools protocol, no chromedriver):
load it, search the catalog, add two items, get recommendations and read the
rendered list, with bearer-token auth on (the token typed into the page)."""

from __future__ import annotations

import pytest
import requests
from PIL import Image

pytestmark = pytest.mark.slow  # Ray, Serve over HTTP and a browser

TOKEN = "page-test-token"


@pytest.fixture(scope="module")
def app_url(ray_session, beauty_root, tmp_path_factory, write_bundles, free_port):
    """A TIGER bundle over the Beauty catalog, served with auth at /shop (a route
    prefix: the page must use relative URLs)."""
    from ray import serve
    from serve_apps.recommender import AppArgs, build_app

    bundle = write_bundles(beauty_root, tmp_path_factory.mktemp("b"))["tiger"]
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = AppArgs(
        model_uri=str(bundle),
        num_cpus=0.5,
        auth_token_env="SIDREC_PAGE_TEST_TOKEN",
        runtime_env={"env_vars": {"SIDREC_PAGE_TEST_TOKEN": TOKEN}},
    )
    serve.run(build_app(args), name="shop", route_prefix="/shop")
    yield f"http://127.0.0.1:{port}/shop/"
    serve.shutdown()


@pytest.fixture(scope="module")
def page():
    from sidrec.serving.browser import Browser

    with Browser(width=1400, height=900, timeout_s=60) as browser:
        yield browser


def texts(page, selector: str) -> list[str]:
    return page.eval(f"[...document.querySelectorAll('{selector}')].map(e => e.textContent)")


def test_the_page_is_static_html_served_without_auth(app_url):
    r = requests.get(app_url, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<script" in r.text and "http" not in r.text.split("<script")[1]  # no CDN, no host
    assert requests.get(f"{app_url}v1/items?q=nail", timeout=10).status_code == 401


def test_search_add_two_items_and_get_explained_recommendations(app_url, page, tmp_path):
    page.goto(app_url)
    # Without the token the API answers 401, and the page says so.
    page.click("#recommend-btn")
    assert "401" in page.wait_for("document.getElementById('status').textContent")

    page.type("#token", TOKEN)
    page.type("#q", "nail polish")
    page.click("#search-btn")
    page.wait_for("document.querySelectorAll('#results li').length >= 2")
    found = page.eval("[...document.querySelectorAll('#results li')].map(li => li.dataset.itemId)")
    for i in (0, 1):
        page.click("#results li button.add", index=i)
    assert (
        page.eval("[...document.querySelectorAll('#history li')].map(li => li.dataset.itemId)")
        == found[:2]
    )
    page.click("#recommend-btn")
    page.wait_for("document.getElementById('recs').dataset.state === 'done'")

    # What the page shows is what the API answers for that history.
    answer = requests.post(
        f"{app_url}v1/recommend",
        json={"history": found[:2], "k": 10, "exclude_seen": True},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    ).json()
    shown = page.eval("[...document.querySelectorAll('#recs > li')].map(li => li.dataset.itemId)")
    assert shown == [item["item_id"] for item in answer["items"]] and len(shown) == 10
    assert not set(shown) & set(found[:2])  # "drop items I have" is on by default
    assert texts(page, "#recs .title") == [item["title"] for item in answer["items"]]
    assert texts(page, "#recs .sid") == ["-".join(map(str, i["sid"])) for i in answer["items"]]
    # one label row per SID code, and the history match under every item
    rows = page.eval(
        "[...document.querySelectorAll('#recs > li')].map(li => li.querySelectorAll('.labels li').length)"
    )
    assert rows == [len(item["sid"]) for item in answer["items"]]
    assert all(t.startswith("Shares ") for t in texts(page, "#recs .why"))
    assert "tiger" in page.eval("document.getElementById('answered-by').textContent")
    assert page.eval("document.getElementById('status').textContent") == ""
    # The token lives in a variable only: not in storage, cookies or the URL.
    assert page.eval("localStorage.length + sessionStorage.length") == 0
    assert TOKEN not in page.eval("document.cookie + location.href")

    shot = page.screenshot(tmp_path / "page.png")
    image = Image.open(shot).convert("L")
    assert image.size[0] == 1400 and image.size[1] >= 900
    assert len(set(image.getdata())) > 20  # a rendered page, not a blank one
