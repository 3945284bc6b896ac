"""Approve a paused migration in the Prefect UI, in headless Chromium, like an operator would.

A staging migration (tier staging asks for approval before phase 1) pauses on the session's
real `prefect server start`. Debian's Chromium, driven by Selenium through Debian's
chromedriver, opens the run's page in the classic UI (`/runs/flow-run/ID`), clicks Resume,
ticks Approved, types the approver and a comment into the form Prefect builds from the
Approval RunInput (the plan description on top) and submits. The run must then finish with
that approver on the phase and on every step Record.

Screenshots go to $PYTEST_ARTIFACTS (default: test-artifacts/ in the repository); the filled
form is also the picture the README shows (docs/approval-ui.png, refreshed by hand with
PHASEGATE_UPDATE_DOCS_SCREENSHOT=1).

Chromium and chromedriver are not optional here: `.ci/run` installs them (apt-get), and a
machine without them fails this test with the command that installs them, it never skips.
"""

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import requests
from conftest import write_environment
from flowruns import FlowThread, stop_all
from prefect.client.orchestration import get_client

from flows.migration import migration
from phasegate.aws import AwsClients
from phasegate.checkpoints import checkpoint_storage
from phasegate.config import AwsSettings, EnvironmentConfig, parse_environment
from phasegate.home import generated_environments_dir
from phasegate.inventory import discover
from phasegate.ledger import Ledger
from phasegate.sandbox.seed import seed_environment
from phasegate.sandbox.simulator import WorkloadSimulator
from tasks.approvals import resume_with
from tasks.registry import ordered

CHROMIUM = os.environ.get("PHASEGATE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PHASEGATE_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
]
VIEWPORT = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
UI_WAIT = 60  # seconds for any one UI element: the UI is a JavaScript app, slow on 2 cores
REPO = Path(__file__).resolve().parents[1]
DOCS_SCREENSHOT = REPO / "docs" / "approval-ui.png"
FAST_GATE = {"interval_seconds": 0.2, "count": 2, "lookback_minutes": 5}

ENV = "acme-staging"
APPROVER = "Grace Hopper (UI)"
COMMENT = "approved in the Prefect UI: NAT removal reviewed"

pytestmark = pytest.mark.usefixtures("prefect_client_env")


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """This test's screenshot folder, kept after the run."""
    root = Path(os.environ.get("PYTEST_ARTIFACTS") or REPO / "test-artifacts")
    folder = root / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Debian Chromium under Selenium, 1280x800; always quit, profile removed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: this UI test needs Debian's Chromium and "
            "ChromeDriver (`apt-get install -y chromium chromium-driver`; .ci/run installs them)",
            pytrace=False,
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[test]'", pytrace=False)

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never download
    profile = tempfile.mkdtemp(prefix="phasegate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(UI_WAIT)
        driver.set_script_timeout(UI_WAIT)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", VIEWPORT)
        yield driver
    finally:
        if driver is not None:
            driver.quit()  # ends chromedriver and every Chromium process it started
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def staging(sandbox: str, tmp_path: Path) -> Iterator[EnvironmentConfig]:
    """A seeded staging environment (asks for approval) with healthy metrics for its gate.

    Its file goes where `phasegate sandbox up` writes environments, so the run is started by
    name and the UI shows 'acme-staging: migration' rather than a temporary path.
    """
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    seed_environment(clients, ENV, 1)
    written = write_environment(
        tmp_path, ENV, sandbox, tier="staging", gates=FAST_GATE,
        approvals={"timeout_seconds": 600},
    )  # fmt: skip
    by_name = generated_environments_dir() / f"{ENV}.yaml"
    shutil.copyfile(written, by_name)
    config = parse_environment(by_name)
    simulator = WorkloadSimulator(lambda: [config], tick_seconds=0.3)
    simulator.start()
    try:
        yield config
    finally:
        simulator.stop()
        by_name.unlink(missing_ok=True)


def ui_base(prefect_api: str) -> str:
    """The UI's address (the API URL without /api), after checking its UI can reach the API."""
    base = prefect_api.removesuffix("/").removesuffix("/api")
    settings = requests.get(f"{base}/ui-settings", timeout=10).json()
    ui_api = settings["api_url"]
    reaches = ui_api.rstrip("/") in ("/api", prefect_api.rstrip("/"))
    assert reaches, (
        f"the Prefect UI at {base} calls its API at {ui_api!r}, not {prefect_api}: the server "
        "was started with another PREFECT_UI_API_URL (set it to '/api' or to the API URL)"
    )
    return base


@pytest.fixture
def start_paused_migration() -> Iterator[Callable[[EnvironmentConfig], FlowThread]]:
    """Phase 1 of a config in a thread, on the test's Prefect API; returned once it is Paused.

    The run is found by its thread's own tag, not by name. After the test, passed or failed,
    the run is rejected if it still waits (the UI never answered) and its thread joined.
    """
    started: list[FlowThread] = []

    def start(config: EnvironmentConfig) -> FlowThread:
        def target() -> Any:
            with checkpoint_storage(config):
                return migration(config.name, phases=[1])

        started.append(FlowThread(target, label=config.name))
        started[-1].wait_paused(timeout=120)
        return started[-1]

    yield start
    stop_all(started, lambda run_id: resume_with(run_id, False, "test cleanup"), timeout=180)


def state_of(run_id: UUID) -> str:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    return state.name if state else "no state"


def approve_in_ui(driver: Any, url: str, config: EnvironmentConfig, artifacts: Path) -> None:
    """Open the paused run's page, fill the Resume form, screenshot it, submit it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, UI_WAIT)
    driver.get(url)
    resume = wait.until(
        ec.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Resume']")),
        message=f"no Resume button on {url}",
    )
    driver.save_screenshot(str(artifacts / "1-paused-run.png"))
    resume.click()

    dialog = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, ".p-modal[role=dialog]")),
        message="the Resume form did not open",
    )
    wait.until(
        lambda _: dialog.find_elements(By.CSS_SELECTOR, ".schema-form-property"),
        message="the Resume form shows no fields",
    )
    plan = dialog.find_element(By.CSS_SELECTOR, ".p-modal__body > article.markdown-renderer")
    assert "Approve phase 1 on" in plan.text and config.name in plan.text, plan.text
    driver.save_screenshot(str(artifacts / "2-resume-form.png"))

    def field(label: str) -> Any:
        """The form property whose label starts with `label` (Prefect adds '(Optional)')."""
        xpath = (
            ".//div[contains(concat(' ', @class, ' '), ' schema-form-property ')]"
            "[.//span[contains(@class, 'schema-form-property__label')"
            f" and starts-with(normalize-space(.), '{label}')]]"
        )
        return dialog.find_element(By.XPATH, xpath)

    toggle = field("Approved").find_element(By.CSS_SELECTOR, "[role=switch]")
    if toggle.get_attribute("aria-checked") != "true":
        toggle.click()
    wait.until(lambda _: toggle.get_attribute("aria-checked") == "true", "Approved stayed off")
    field("Approver").find_element(By.CSS_SELECTOR, "textarea").send_keys(APPROVER)
    field("Comment").find_element(By.CSS_SELECTOR, "textarea").send_keys(COMMENT)

    # The picture for the README: the plan on top, the answer below it, before Submit.
    driver.execute_script(
        "arguments[0].scrollTop = 0", dialog.find_element(By.CSS_SELECTOR, ".p-modal__body")
    )
    filled = artifacts / "3-resume-form-filled.png"
    driver.save_screenshot(str(filled))
    if os.environ.get("PHASEGATE_UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(filled, DOCS_SCREENSHOT)

    dialog.find_element(
        By.XPATH, ".//div[contains(@class,'p-modal__footer')]//button[normalize-space(.)='Submit']"
    ).click()
    wait.until(ec.invisibility_of_element(dialog), message="the Resume form did not close")
    driver.save_screenshot(str(artifacts / "4-submitted.png"))


@pytest.mark.timeout(600)  # a cold Chromium and the UI's JavaScript on 2 cores, then phase 1
def test_operator_approves_a_paused_migration_in_the_prefect_ui(
    prefect_api: str,
    staging: EnvironmentConfig,
    browser: Any,
    artifacts: Path,
    start_paused_migration: Callable[[EnvironmentConfig], FlowThread],
) -> None:
    base = ui_base(prefect_api)
    assert len(discover(staging).nat_gateways) == 2
    bg = start_paused_migration(staging)
    run_id = bg.run_id
    assert len(discover(staging).nat_gateways) == 2, "nothing may change before approval"
    approve_in_ui(browser, f"{base}/runs/flow-run/{run_id}", staging, artifacts)
    deadline = time.monotonic() + 60
    while state_of(run_id) == "Paused":
        assert time.monotonic() < deadline, "submitting the form did not resume the run"
        time.sleep(0.5)
    bg.thread.join(timeout=180)
    assert not bg.thread.is_alive(), f"the migration did not finish: {state_of(run_id)}"

    assert bg.error is None, bg.error
    [one] = bg.result.phases
    assert (one.status, one.gate, one.approver) == ("completed", "pass", APPROVER)
    assert discover(staging).nat_gateways == []
    assert state_of(run_id) == "Completed"

    ledger = Ledger(staging)
    records = {step: ledger.checkpoint(1, step) for step in ordered(1)}
    assert all(records.values()), records
    stamped = {(r.approver, r.comment) for r in records.values() if r}
    assert stamped == {(APPROVER, COMMENT)}
