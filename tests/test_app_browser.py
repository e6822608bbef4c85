"""The authoring page as a person uses it, in Debian's headless chromium driven by selenium:
type a two-segment timeline, Generate, scrub, pin a pose, regenerate, download the BVH and read
it back with import_bvh, set a joint target from the shown pose. A screenshot goes to results/app_browser.png (git-ignored), and the 3D
view must not be blank. With CI=true a missing browser fails the test instead of skipping it."""
import io
import json
import os
import re
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from authoring.session import decode_body, parse_request
from bvh import import_bvh
from conftest import ROOT
from test_app_api import call, free_port, start_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = os.path.join(ROOT, "results", "app_browser.png")


def browser_or_skip():
    """(chromium, chromedriver) paths; fails in CI when they are missing, skips elsewhere."""
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -r requirements.txt)")
    if missing:
        reason = f"the browser test needs {', '.join(missing)}: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM, CHROMEDRIVER


def open_browser(download_dir: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, driver_path = browser_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900",
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": download_dir,
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": download_dir})
    return driver


# ---------------------------------------------------------------------------------------
# What a person does on the page
# ---------------------------------------------------------------------------------------
def wait_for(condition, timeout: float = 30.0, what: str = "the page", driver=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    seen = "" if driver is None else "; the page said: " + page_text(driver)[:600].replace("\n", " | ")
    raise AssertionError(f"timed out waiting for {what}{seen}")


def field(driver, label: str):
    """The input a label names (the first visible input after it)."""
    from selenium.webdriver.common.by import By
    return driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']/following::input[not(@type='hidden')][1]")


def click(driver, text: str) -> None:
    """Click the button labelled text, then pause as a person does: viser's client keeps only the
    latest of GUI messages sent within 50 ms of each other, so a click at once followed by another
    input would be lost."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    for attempt in range(5):  # the page may re-render between finding a button and using it
        try:
            buttons = [el for el in driver.find_elements(By.TAG_NAME, "button") if el.text.strip() == text]
            assert buttons, f"no button {text!r}"
            buttons[0].click()
            break
        except StaleElementReferenceException:
            if attempt == 4:
                raise
            time.sleep(0.1)
    time.sleep(0.2)


def type_into(driver, label: str, text: str) -> None:
    from selenium.webdriver.common.keys import Keys
    element = field(driver, label)
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.BACKSPACE)
    element.send_keys(text)
    time.sleep(0.2)  # as a person pauses (see click)


def scrub_to(driver, frame: int) -> None:
    """Move the frame slider to frame with its keyboard (Home, then Right arrow)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    thumb = driver.find_element(By.CSS_SELECTOR, "[role=slider]")
    thumb.send_keys(Keys.HOME)
    for _ in range(frame):
        thumb.send_keys(Keys.ARROW_RIGHT)


def distances(pose: np.ndarray) -> np.ndarray:
    """(22, 22) distances between a pose's joints: the pose without its place and facing."""
    return np.linalg.norm(pose[:, None] - pose[None], axis=-1)


def download(driver, downloads: str, label: str, name: str) -> str:
    """Click an export button and return the path of the file it downloads, renamed to name."""
    before = set(os.listdir(downloads))
    click(driver, label)
    new = wait_for(lambda: [f for f in set(os.listdir(downloads)) - before if not f.endswith(".crdownload")],
                   30, f"the {label} download")
    time.sleep(0.3)
    path = os.path.join(downloads, name)
    os.replace(os.path.join(downloads, new[0]), path)
    return path


def page_text(driver) -> str:
    return driver.execute_script("return document.body.innerText")


def canvas_pixels(driver) -> np.ndarray:
    """(H, W, 3) screenshot pixels of the 3D view (the largest canvas)."""
    from selenium.webdriver.common.by import By
    png = driver.get_screenshot_as_png()
    canvas = max(driver.find_elements(By.TAG_NAME, "canvas"), key=lambda c: c.size["width"] * c.size["height"])
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    ratio = image.shape[1] / driver.execute_script("return window.innerWidth")
    x, y = int(canvas.location["x"] * ratio), int(canvas.location["y"] * ratio)
    w, h = int(canvas.size["width"] * ratio), int(canvas.size["height"] * ratio)
    return image[y:y + h, x:x + w]


def skeleton_pixels(driver) -> int:
    """How many pixels of the 3D view are in the skeleton's strong blue or orange (the grid is grey)."""
    pixels = canvas_pixels(driver)[:, :700].astype(int)  # the left part: the control panel floats on the right
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    blue = (b > r + 60) & (b > g + 30)
    orange = (r > b + 80) & (r > g + 40)
    return int((blue | orange).sum())


# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(tiny_trained, tmp_path_factory):
    browser_or_skip()
    cwd = tmp_path_factory.mktemp("page_cwd")
    port = free_port()
    proc, out = start_app(cwd, "--port", port, "--checkpoint_dir", tiny_trained["checkpoint_dir"], "--out_dir", "out",
                          ready="api:")
    assert f"page: http://127.0.0.1:{port}" in out and f"api:  POST http://127.0.0.1:{port + 1}/generate" in out
    yield {"port": port, "cwd": cwd}
    proc.terminate()
    proc.wait(timeout=20)


def test_author_a_timeline_pin_regenerate_and_export(page, tmp_path):
    downloads = str(tmp_path / "downloads")
    os.makedirs(downloads)
    driver = open_browser(downloads)
    try:
        driver.get(f"http://127.0.0.1:{page['port']}/")
        wait_for(lambda: "Prompt 1" in page_text(driver), what="the control panel")
        # a two-segment timeline
        type_into(driver, "Prompt 1", "a person walks forward")
        type_into(driver, "Seconds 1", "2")
        click(driver, "Add segment")
        wait_for(lambda: "Prompt 2" in page_text(driver), what="a second segment")
        type_into(driver, "Prompt 2", "a person waves with the right hand")
        type_into(driver, "Seconds 2", "1.5")
        click(driver, "Generate")
        wait_for(lambda: "Ready (generation 1): 1 sample(s) of 70 frames" in page_text(driver), 60,
                 "the first motion", driver)
        assert "a person waves with the right hand" in page_text(driver) or "a person walks forward" in page_text(driver)
        # pause and scrub to frame 50 (in the second segment) with the slider's keys
        click(driver, "Play / Pause")
        wait_for(lambda: "paused)" in page_text(driver), 10, "the pause", driver)
        scrub_to(driver, 50)
        wait_for(lambda: "frame 50 of 69, paused" in page_text(driver), 10, "the scrubbed frame", driver)
        assert "Segment 2/2: a person waves with the right hand" in page_text(driver)
        click(driver, "Pin this frame's pose")
        wait_for(lambda: "Pinned frames: 50" in page_text(driver), 10, "the pin", driver)
        first = import_bvh(download(driver, downloads, "Export BVH", "first.bvh")).joints
        session_path = download(driver, downloads, "Save session (.json)", "session.json")
        with open(session_path, "rb") as fh:
            session = parse_request(decode_body(fh.read()))
        assert session.segments == [("a person walks forward", 2.0), ("a person waves with the right hand", 1.5)]
        assert [frame for frame, _ in session.pins] == [50] and session.checkpoints["sha256"].keys() == {
            "vqvae", "gpt", "diffusion"}
        os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
        driver.save_screenshot(SCREENSHOT)
        assert skeleton_pixels(driver) > 200, f"the 3D view shows no skeleton (see {SCREENSHOT})"
        # regenerate with the pin, then download the BVH
        type_into(driver, "Seed", "5")
        click(driver, "Generate")
        wait_for(lambda: "Ready (generation 2): 1 sample(s) of 70 frames" in page_text(driver), 60,
                 "the regenerated motion", driver)
        second = import_bvh(download(driver, downloads, "Export BVH", "second.bvh")).joints
        assert first.shape == second.shape == (70, 22, 3) and np.isfinite(second).all()
        # the regenerated motion (another seed) differs, but holds the pinned pose at frame 50
        assert np.abs(distances(first[20]) - distances(second[20])).max() > 0.02
        assert np.abs(distances(first[50]) - distances(second[50])).max() < 0.01
        add_a_joint_target(driver, second)
        draw_a_path_point(driver)
        second_click_while_busy(driver, page["port"] + 1)
        tabs_are_separate(driver, page["port"], session_path)
    finally:
        driver.quit()


def add_a_joint_target(driver, motion: np.ndarray) -> None:
    """At frame 0 (paused), 'Use current pose' fills the target with the right wrist's position
    there (the exported motion's, (T, 22, 3)) and 'Add target at this frame' lists it; the next
    Generate (second_click_while_busy) is asked to meet it."""
    click(driver, "Play / Pause")
    wait_for(lambda: "paused)" in page_text(driver), 10, "the pause", driver)
    scrub_to(driver, 0)
    wait_for(lambda: "frame 0 of 69, paused" in page_text(driver), 10, "frame 0", driver)
    click(driver, "Use current pose")
    target = lambda: np.array([float(field(driver, f"Target {c} (m)").get_attribute("value")) for c in "xyz"])
    wait_for(lambda: np.abs(target()[[0, 2]] - motion[0, 21, [0, 2]]).max() < 0.01, 10, "the wrist's position", driver)
    click(driver, "Add target at this frame")
    wait_for(lambda: "right_wrist at frame 0: (" in page_text(driver), 10, "the listed target", driver)


def draw_a_path_point(driver) -> None:
    """With 'Draw root path' on, a click on the floor adds a path point at the current frame."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    assert "Path points (frame: x, z): none" in page_text(driver)
    field(driver, "Draw root path").click()
    time.sleep(0.5)
    canvas = max(driver.find_elements(By.TAG_NAME, "canvas"), key=lambda c: c.size["width"] * c.size["height"])
    offset = (-canvas.size["width"] // 4, canvas.size["height"] // 3)  # left of and below the centre: the floor
    for attempt in range(3):  # on a loaded machine the toggle can reach the server after the first click
        ActionChains(driver).move_to_element_with_offset(canvas, *offset).click().perform()
        try:
            wait_for(lambda: "Path points (frame: x, z): none" not in page_text(driver), 10, "a path point", driver)
            break
        except AssertionError:
            if attempt == 2:
                raise
            time.sleep(1.0)
    field(driver, "Draw root path").click()
    click(driver, "Clear pins and path")
    wait_for(lambda: "Pinned frames: none" in page_text(driver), 10, "cleared constraints", driver)


def second_click_while_busy(driver, api_port: int) -> None:
    """Generate clicked again while a long request runs: one generation, the first, completes."""
    completed = json.loads(call(api_port, "GET", "/health")[2])["completed"]
    type_into(driver, "Seconds 1", "30")
    type_into(driver, "Samples", "3")
    click(driver, "Generate")
    click(driver, "Generate")
    wait_for(lambda: "Ready (generation 3): 3 sample(s) of 630 frames" in page_text(driver), 120,
             "the long motion", driver)
    met = re.search(r"Joint targets met within ([0-9.]+) cm", page_text(driver))
    assert met and float(met.group(1)) < 2.0, "the joint target went into the request and was met"
    time.sleep(1.0)
    assert "generation 4" not in page_text(driver)
    assert json.loads(call(api_port, "GET", "/health")[2])["completed"] == completed + 1


def tabs_are_separate(driver, port: int, session_path: str) -> None:
    """A second tab is a session of its own: the first tab's timeline and motion are not in it;
    it splits a 'then' prompt, and loads the session the first tab saved."""
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(f"http://127.0.0.1:{port}/")
    wait_for(lambda: "Prompt 1" in page_text(driver), 30, "the second tab", driver)
    text = page_text(driver)
    assert "Prompt 2" not in text and "Ready" not in text and "Write a timeline" in text
    type_into(driver, "Prompt 1", "a person jumps and then waves")
    click(driver, "Split 'then' prompts into segments")
    wait_for(lambda: "Prompt 2" in page_text(driver), 10, "the split segments", driver)
    assert [field(driver, f"Prompt {i}").get_attribute("value") for i in (1, 2)] == ["a person jumps", "a person waves"]
    assert [field(driver, f"Seconds {i}").get_attribute("value") for i in (1, 2)] == ["1.5", "1.5"]
    from selenium.webdriver.common.by import By
    driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(session_path)
    wait_for(lambda: "Loaded a session of 2 segment(s)" in page_text(driver), 20, "the loaded session", driver)
    assert field(driver, "Prompt 2").get_attribute("value") == "a person waves with the right hand"
    assert "Pinned frames: 50" in page_text(driver)
    driver.switch_to.window(first)
    assert field(driver, "Prompt 1").get_attribute("value") == "a person walks forward"
    assert "Ready (generation 3)" in page_text(driver)


def test_missing_checkpoints_are_named_on_the_page_and_in_the_terminal(tmp_path):
    port = free_port()
    proc, out = start_app(tmp_path, "--port", port, "--checkpoint_dir", tmp_path / "none", "--out_dir", "out")
    try:
        assert "no usable model" in out and "python train.py" in out, out
        status, _, raw = call(port + 1, body={"prompt": "a person walks forward", "seconds": 3})
        assert status == 503 and "python train.py" in json.loads(raw)["error"]
        page_websocket_checks_origin(port)
        driver = open_browser(str(tmp_path))
        try:
            driver.get(f"http://127.0.0.1:{port}/")
            wait_for(lambda: "No model loaded" in page_text(driver), 30, "the missing-model note", driver)
            assert "python train.py" in page_text(driver)
            generate = [b for b in driver.find_elements("tag name", "button") if b.text.strip() == "Generate"][0]
            assert not generate.is_enabled()
        finally:
            driver.quit()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def page_websocket_checks_origin(port: int) -> None:
    """The page's websocket takes the page's own origin (or none) but not another site's."""
    import viser
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    protocol = [f"viser-v{viser.__version__}"]
    for origin in (f"http://127.0.0.1:{port}", None):
        with connect(f"ws://127.0.0.1:{port}", origin=origin, subprotocols=protocol, open_timeout=20) as ws:
            assert ws.recv(timeout=20)
    with pytest.raises(InvalidStatus, match="403"):
        connect(f"ws://127.0.0.1:{port}", origin="http://attacker.example", subprotocols=protocol, open_timeout=20)
