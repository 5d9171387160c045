"""The rater's page in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (named explicitly, so Selenium Manager never looks for, or downloads, a
driver or a browser). A rater opens their link, answers by keyboard and by mouse, reloads and
reopens the link halfway, finishes, changes an answer: the export holds each answer once.

`.ci/run` installs chromium and chromium-driver and sets PERSONA_TESTBED_TEST_BROWSER=1, under
which a missing browser fails these tests; elsewhere they run when the browser is there, and
are skipped, saying what to install, when it is not. With PERSONA_TESTBED_SCREENSHOTS=DIR the
screenshots test also writes the README's pictures (study-rater.png, study-rater-phone.png,
study-organiser.png) into DIR.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from engine.study import store, tally
from tests.study_support import create_study, links, organiser_path, serving, write_pairs

REQUIRE_ENV = "PERSONA_TESTBED_TEST_BROWSER"
SCREENSHOTS_ENV = "PERSONA_TESTBED_SCREENSHOTS"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HOSTILE = (
    "<script>document.body.dataset.pwned = 'script'</script>"
    '"><img src=x onerror="document.body.dataset.pwned = \'img\'">'
)


def _require_browser() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if not missing:
        return
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but {', '.join(missing)} is missing")
    pytest.skip(
        f"no browser here ({', '.join(missing)} missing): `apt-get install chromium "
        f"chromium-driver` to run it; .ci/run does, and sets {REQUIRE_ENV}=1"
    )


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    _require_browser()
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager, were it ever asked: no network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--no-first-run", "--disable-extensions",
                     f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900",
                     "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: webdriver.Chrome, css: str, text: str) -> None:
    # the page may be replaced between finding an element and reading it: look again then
    WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: any(text in e.text for e in d.find_elements(By.CSS_SELECTOR, css)),
        f"{text!r} in {css}",
    )


def _step(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.CSS_SELECTOR, ".step").text


def _answer_by_keyboard(driver: webdriver.Chrome, key: str, why: str) -> None:
    ActionChains(driver).send_keys(key).perform()  # the page's shortcut: choose, then type
    assert driver.switch_to.active_element.get_attribute("id") == "justification"
    ActionChains(driver).send_keys(why).perform()
    ActionChains(driver).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()


def _answer_by_mouse(driver: webdriver.Chrome, choice: str, why: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"input[name=choice][value={choice}]").click()
    box = driver.find_element(By.ID, "justification")
    box.clear()
    box.send_keys(why)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def _no_script_ran(driver: webdriver.Chrome) -> None:
    assert driver.execute_script("return document.body.dataset.pwned") is None
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.accept()


def test_a_rater_completes_the_study_with_a_reload_halfway(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    questions = 4
    write_pairs(tmp_path / "run", 2, questions, {"persona": f"age: 40\nnote: {HOSTILE}",
                                                  "rejected": f"original {HOSTILE}"})  # fmt: skip
    study = create_study(tmp_path / "run", tmp_path / "study", personas=2, questions=questions)
    seat = links(study)[0]
    with serving(study) as server:
        url = server.base_url + seat["path"]
        browser.get(url)
        _wait(browser, ".progress-text", f"0 of {questions} answered")
        assert _step(browser) == f"Question 1 of {questions}"
        shown = browser.find_element(By.CSS_SELECTOR, ".persona").text
        assert "<img src=x onerror=" in shown  # the model's text, shown as text
        _no_script_ran(browser)

        _answer_by_keyboard(browser, "1", "They would like the first one.")
        _wait(browser, ".step", f"Question 2 of {questions}")
        _answer_by_mouse(browser, "B", "The second fits their habits.")
        _wait(browser, ".step", f"Question 3 of {questions}")

        # halfway: type without saving, reload, then close the page and open the link again
        browser.find_element(By.ID, "justification").send_keys("not saved")
        browser.refresh()
        _wait(browser, ".progress-text", f"2 of {questions} answered")
        assert _step(browser) == f"Question 3 of {questions}"
        browser.get("about:blank")
        browser.get(url)
        _wait(browser, ".progress-text", f"2 of {questions} answered")
        assert _step(browser) == f"Question 3 of {questions}"
        assert browser.find_element(By.ID, "justification").get_attribute("value") == ""

        _answer_by_keyboard(browser, "3", "Hard to say for this person.")
        _wait(browser, ".step", f"Question 4 of {questions}")
        _answer_by_keyboard(browser, "2", "B sounds like them.")
        _wait(browser, "h1", f"all {questions} questions are answered")

        # change the second answer from the summary, then reload the page the POST led to
        browser.find_elements(By.CSS_SELECTOR, ".summary a")[1].click()
        _wait(browser, ".step", f"Question 2 of {questions}")
        box = browser.find_element(By.ID, "justification")
        assert box.get_attribute("value") == "The second fits their habits."
        _answer_by_mouse(browser, "A", "On reflection, the first.")
        _wait(browser, "h1", f"all {questions} questions are answered")
        browser.refresh()
        _wait(browser, "h1", f"all {questions} questions are answered")
        _no_script_ran(browser)

        browser.get(server.base_url + organiser_path(study))
        _wait(browser, ".facts", f"1 of {len(links(study))} raters finished")
        browser.save_screenshot(str(tmp_path / "organiser.png"))
    assert (tmp_path / "organiser.png").read_bytes().startswith(b"\x89PNG")

    counted = tally.tally(store.load(study), store.read_answers(study))
    rows = [r for r in counted.raters if r.rater == seat["seat"]]
    assert len(counted.raters) == len(rows) == questions
    assert len({r.id for r in rows}) == questions
    by_number = {r.number: r for r in rows}
    assert (by_number[1].preferred, by_number[1].submits) == ("A", 1)
    assert (by_number[2].preferred, by_number[2].submits) == ("A", 2)
    assert by_number[2].justification == "On reflection, the first."
    assert (by_number[3].label, by_number[3].preferred) == ("cant_tell", None)
    assert by_number[4].preferred == "B"
    assert all("not saved" not in r.justification for r in rows)


PERSONA = """\
age: 67
sex: Female
race: White alone
education: Associate's degree
employment status: Not in labor force
occupation category: retired school librarian
income: $31,200
marital status: Widowed
place of birth: Ohio/OH
big five scores: Openness: High, Conscientiousness: High, Extraversion: Low
personal time: Gardening; the church choir; reading mysteries
lifestyle: Quiet, small-town, close to her grandchildren
ideology: Moderate
religion: United Methodist"""

ITEMS = [
    (
        "Should towns ban cars from their centres?",
        "Car-free centres cut pollution and make streets safer for everyone, and most people "
        "adapt quickly once buses and bike lanes are in place.",
        "It depends on who has to get there. Car-free streets are pleasant, but older residents "
        "and people who live out of town need a way to reach the pharmacy and the library: a "
        "ban works best with parking at the edge and a good shuttle.",
    ),
    (
        "Is it fair to ask retirees to pay school taxes?",
        "Yes: schools are a shared investment, and today's retirees were educated by the "
        "taxes of people before them.",
        "Many retirees see it as passing on what they were given, though on a fixed income a "
        "rising bill hurts; relief for low-income seniors keeps it fair.",
    ),
    (
        "Should libraries remove books that some parents object to?",
        "Libraries should keep a broad collection; parents can guide their own children's "
        "reading without deciding for everyone.",
        "Removing books rarely helps: a librarian can point families to other titles, and "
        "a review process with local parents keeps trust on both sides.",
    ),
]


def _nice_study(tmp_path: Path) -> Path:
    """One persona, three hand-written items, in `runs/persona` under `tmp_path` (the cwd)."""
    run = Path("runs/persona")
    run.mkdir(parents=True)
    lines = []
    for n, (question, original, revision) in enumerate(ITEMS):
        lines.append(
            {"persona_id": "p0412", "persona": PERSONA, "prompt_id": f"q{n:04d}",
             "prompt": question, "rejected": original, "chosen": revision}
        )  # fmt: skip
    (run / "pairs.jsonl").write_text("".join(f"{json.dumps(line)}\n" for line in lines))
    return create_study(run, Path("study"), personas=1, questions=len(ITEMS), raters=4)


def _fits(driver: webdriver.Chrome) -> bool:
    """No horizontal scrolling: the page is no wider than the window."""
    return bool(
        driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    )


def test_screenshots_of_the_rater_and_organiser_pages(
    tmp_path: Path, browser: webdriver.Chrome, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the organiser's page shows the run as given: runs/persona
    study = tmp_path / _nice_study(tmp_path)
    seats = links(study)
    shots = tmp_path / "shots"
    shots.mkdir()
    with serving(study) as server:
        for seat, why in zip(seats[1:3], ("Sounds like her.", "She would want both sides."),
                             strict=True):  # fmt: skip
            for number in range(1, len(ITEMS) + 1):
                assert server.answer(seat["path"], number, "B", why).status == 303
        browser.get(server.base_url + seats[0]["path"])
        _answer_by_mouse(browser, "B", "She thinks of the people who cannot walk far.")
        _wait(browser, ".step", "Question 2 of 3")
        browser.find_element(By.CSS_SELECTOR, "input[value=B]").click()
        browser.find_element(By.ID, "justification").send_keys("She paid them herself and")
        assert _fits(browser)
        browser.save_screenshot(str(shots / "study-rater.png"))
        browser.set_window_size(390, 844)  # a phone
        browser.refresh()
        _wait(browser, ".step", "Question 2 of 3")
        assert _fits(browser)
        browser.find_element(By.CSS_SELECTOR, "input[value=B]").click()
        browser.execute_script("document.querySelector('.item').scrollIntoView()")
        browser.save_screenshot(str(shots / "study-rater-phone.png"))
        browser.set_window_size(1280, 800)
        browser.get(server.base_url + organiser_path(study))
        _wait(browser, ".facts", "2 of 4 raters finished")
        assert _fits(browser)
        browser.save_screenshot(str(shots / "study-organiser.png"))
        browser.set_window_size(390, 844)
        assert _fits(browser)  # the tables scroll inside their box, the page does not
    for shot in shots.iterdir():
        assert shot.read_bytes().startswith(b"\x89PNG")
    target = os.environ.get(SCREENSHOTS_ENV)
    if target:
        for shot in shots.iterdir():
            shutil.copy(shot, Path(target) / shot.name)
