"""The playground page in a real headless Chromium: pick or paste data, evaluate, and read the cards as a
user sees them (indicator, summary, rendered detail Markdown, suggestions with their orders, override
reasons, the raw JSON). Skips when Debian's chromium or Playwright's Python package is missing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cdshooks import create_app

from ..conftest import make_settings
from ..loopback import serve_wsgi
from ..probe_rules import ORDERS, POTASSIUM

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
DEMO = "demo-twitching-weakness"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Session:
    """One page on the app, recording page errors and any request that leaves the app's origin."""

    def __init__(self, browser, base: str):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", self._console)
        self.page.route("**/*", self._route)
        self.page.goto(base + "/")

    def _console(self, msg) -> None:
        # an HTTP error answer is logged as "Failed to load resource"; the tests check those answers themselves
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(msg.text)

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(self.base + "/") or url.startswith("data:"):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def pick(self, name: str) -> None:
        self.page.locator(f'#fixture option[value="{name}"]').wait_for(state="attached")
        self.page.select_option("#fixture", name)
        self.page.locator("#status", has_text=f"Loaded {name}").wait_for()

    def evaluate(self) -> str:
        self.page.click("#evaluate")
        status = self.page.locator("#status.status--ok, #status.status--error")
        status.wait_for()
        return status.inner_text()


@pytest.fixture
def session(browser, probe_rules, tmp_path):
    app = create_app(make_settings(tmp_path))
    with serve_wsgi(app) as base:
        s = Session(browser, base)
        yield s
        s.context.close()
    app.extensions["cdshooks"].store.dispose()
    assert s.errors == [] and s.outside == []


def test_a_fixture_renders_its_cards_as_an_ehr_would(session, tmp_path):
    page = session.page
    session.pick(DEMO)
    assert page.input_value("#hook") == "patient-view"
    assert json.loads(page.input_value("#bundle"))["resourceType"] == "Bundle"
    status = session.evaluate()
    assert re.fullmatch(r"\d+ cards? in \d+ ms", status), status

    card = page.locator(f'article.card[data-rule="{POTASSIUM}"]')
    assert card.count() == 1
    assert "card--warning" in card.get_attribute("class").split()
    assert card.locator(".indicator").inner_text().lower() == "warning"
    assert card.locator(".summary").inner_text().startswith("Probe: potassium 3.1 mmol/L on ")

    detail = card.locator(".detail")
    assert detail.locator("p strong").first.inner_text() == "Why this card"
    assert detail.locator("ul > li").all_inner_texts() == ["potassium is low", "second reason"]
    assert detail.locator("li em").inner_text() == "low"
    links = detail.locator("a")
    assert links.count() == 1
    assert links.get_attribute("href") == "https://example.org/guide" and links.inner_text() == "probe guideline"
    assert links.get_attribute("rel") == "noopener noreferrer"
    # raw HTML stays text, and a javascript: link is not a link
    assert "<script>window.probeInjected = 1</script>" in detail.inner_text()
    assert "bad link" in detail.inner_text()
    assert detail.locator("script").count() == 0
    assert page.evaluate("typeof window.probeInjected") == "undefined"

    suggestion = card.locator(".suggestion")
    assert suggestion.locator(".suggestion-button").inner_text() == "Give potassium chloride"
    action = suggestion.locator(".action")
    assert action.locator(".action-type").inner_text().lower() == "create"
    assert action.locator(".resource-type").inner_text() == "MedicationRequest"
    assert action.locator(".order-name").inner_text() == "Potassium chloride 20 mEq"
    assert action.locator(".dose").inner_text() == "20 mEq · 2 × per 1 d · with food"
    assert card.locator(".links a").get_attribute("href") == "https://example.org/probe"
    assert card.locator(".source").inner_text().endswith(f"rule {POTASSIUM}")

    suggestion.locator(".suggestion-button").click()
    assert "suggestion--accepted" in suggestion.get_attribute("class").split()
    reasons = card.locator(".override .reason")
    assert reasons.all_inner_texts() == ["Already addressed", "Not clinically relevant", "Patient declined",
                                         "Patient data is incorrect"]
    reasons.first.click()
    assert "card--dismissed" in card.get_attribute("class").split()
    assert "Dismissed: Already addressed" in card.locator(".dismissed-note").inner_text()

    # the raw JSON panels hold the exchange, and every card of the response is on the page
    page.click("#response-panel summary")
    response = json.loads(page.locator("#response-json").text_content())
    assert page.locator("article.card").count() == len(response["cards"])
    assert page.locator("#count").inner_text() == f"({len(response['cards'])})"
    indicators = [c["indicator"] for c in response["cards"]]
    classes = [page.locator("article.card").nth(i).get_attribute("class") for i in range(len(indicators))]
    assert [f"card--{i}" in c.split() for i, c in zip(indicators, classes)] == [True] * len(indicators)
    request = json.loads(page.locator("#request-json").text_content())
    assert request["hook"] == "patient-view" and request["context"]["patientId"] == DEMO and request["prefetch"]
    page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)


def test_order_select_fixture_sends_its_selection(session):
    page = session.page
    session.pick(f"{DEMO}-baclofen-select")
    assert page.input_value("#hook") == "order-select"
    session.evaluate()
    card = page.locator(f'article.card[data-rule="{ORDERS}"]')
    assert card.count() == 1 and "card--info" in card.get_attribute("class").split()
    assert card.locator(".summary").inner_text() == f"Probe: judged MedicationRequest/{DEMO}-baclofen"


def test_pasted_bundle_with_two_patients_needs_a_patient_id(session):
    page = session.page
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p"}},
        {"resource": {"resourceType": "Patient", "id": "q"}},
        {"resource": {"resourceType": "Observation", "id": "k", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                      "subject": {"reference": "Patient/q"}, "effectiveDateTime": "$now-1d",
                      "valueQuantity": {"value": 2.9, "unit": "mmol/L"}}}]}
    page.fill("#bundle", json.dumps(bundle))
    status = session.evaluate()
    assert "holds 2 patients (p, q); enter one of them in Patient id" in status
    assert "status--error" in page.get_attribute("#status", "class")
    assert page.locator("article.card").count() == 0
    page.fill("#patient", "q")
    session.evaluate()
    card = page.locator(f'article.card[data-rule="{POTASSIUM}"]')
    assert card.locator(".summary").inner_text().startswith("Probe: potassium 2.9 mmol/L on ")


def test_an_uploaded_file_is_evaluated(session, tmp_path):
    page = session.page
    path = tmp_path / "upload.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "up"}}]}), "utf-8")
    page.set_input_files("#file", str(path))
    page.locator("#status", has_text="Read upload.json").wait_for()
    assert session.evaluate().startswith("No cards")
    request = json.loads(page.locator("#request-json").text_content())
    assert request["context"]["patientId"] == "up"


@pytest.mark.parametrize("width", [800, 1200, 1600])
def test_the_layout_holds_with_the_json_panels_open(browser, probe_rules, tmp_path, width):
    """Opening Response (a long JSON) never widens the page; the cards stay inside the viewport."""
    app = create_app(make_settings(tmp_path))
    with serve_wsgi(app) as base:
        s = Session(browser, base)
        page = s.page
        page.set_viewport_size({"width": width, "height": 900})
        s.pick(DEMO)
        s.evaluate()
        page.click("#response-panel summary")
        page.click("#request-panel summary")
        page.locator("#response-json").wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        for box in (page.locator("article.card").nth(i).bounding_box() for i in range(page.locator("article.card").count())):
            assert box["x"] >= 0 and box["x"] + box["width"] <= width
        pre = page.locator("#response-json").bounding_box()
        assert pre["x"] + pre["width"] <= width
        s.context.close()
        assert s.errors == [] and s.outside == []
    app.extensions["cdshooks"].store.dispose()


def test_a_pasted_bundle_says_what_was_read_dropped_and_unreadable(session):
    page = session.page
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
         "resource": {"resourceType": "Patient", "id": "syn"}},
        {"fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
         "resource": {"resourceType": "Encounter", "status": "finished",
                      "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}}},
        {"fullUrl": "urn:uuid:33333333-3333-3333-3333-333333333333",
         "resource": {"resourceType": "Claim", "status": "active",
                      "patient": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}}},
        {"fullUrl": "urn:uuid:44444444-4444-4444-4444-444444444444"},
    ]}
    page.fill("#bundle", json.dumps(bundle))
    assert session.evaluate().startswith("No cards")
    text = page.locator("#reading").inner_text()
    m = re.fullmatch(r"Read 3 resources: (\d+) sent to patient-view for Patient/syn, (\d+) dropped \(.*\), 1 unreadable\.",
                     text)
    assert m, text
    assert int(m.group(1)) + int(m.group(2)) == 3
