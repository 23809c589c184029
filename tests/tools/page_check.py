#!/usr/bin/env python3
"""Drives uringseed's web page in headless Chromium (selenium, WebDriver) for tests/page.rs.

Usage: page_check.py CONFIG.json. CONFIG holds: base (http://127.0.0.1:PORT), token, ih (the
seeded torrent, removable: from the command line), add_torrent and add_data (a .torrent and
its data directory for the add form), add_ih, download_cmd and download_env (a real client's
rate-capped download, started once the page shows the torrent), screenshot (PNG path or "").

Prints one JSON object on the last line of stdout: {"checks": {name: value}, "errors": [...],
"console": [...], "timings": {...}}; the Rust test asserts on it. It exits 0 unless it could
not produce that object.
"""
import json
import os
import subprocess
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

cfg = json.load(open(sys.argv[1]))
base = cfg["base"]
ih = cfg["ih"]
checks = {}
errors = []
console = []  # SEVERE browser log entries not expected by a step
timings = {}
t0 = time.monotonic()


def mark(name):
    timings[name] = round(time.monotonic() - t0, 2)


def take_logs(allowed=()):
    """Browser log entries since the last call; SEVERE ones not matching `allowed` are kept."""
    for e in driver.get_log("browser"):
        if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed):
            console.append(e["message"])


def wait(what, cond, timeout=20):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: cond())
    except TimeoutException:
        errors.append(f"timed out after {timeout} s: {what}")
        return None


def q(css):
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def visible(css):
    e = q(css)
    return e is not None and e.is_displayed()


def uploaded(ihex):
    e = q(f'tr[data-ih="{ihex}"] td.uploaded')
    return int(e.get_attribute("data-session") or 0) if e else None


def message():
    m = q("#message")
    if m is None or not m.is_displayed():
        return None
    return {"kind": m.get_attribute("data-kind"), "text": m.text}


opts = webdriver.ChromeOptions()
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,700",
          "--disable-gpu", "--no-first-run", "--disable-background-networking",
          "--disable-component-update", "--disable-sync"):
    opts.add_argument(a)
if os.environ.get("PAGE_CHROMIUM"):
    opts.binary_location = os.environ["PAGE_CHROMIUM"]
opts.set_capability("goog:loggingOptions", {"browser": "ALL"})
driver_path = os.environ.get("PAGE_CHROMEDRIVER", "/usr/bin/chromedriver")
driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
driver.set_window_size(1200, 700)
mark("browser_started")
download = None
try:
    # 1. No cookie: the API answers 401 and the page shows its login form.
    driver.get(base + "/")
    checks["login_form_without_token"] = bool(wait("login form", lambda: visible("#login")))
    take_logs(allowed=("status of 401",))

    # 2. The login form: a wrong token shows an error, the right one the torrents.
    driver.find_element(By.ID, "login-token").send_keys("wrong")
    driver.find_element(By.ID, "login-submit").click()
    m = wait("error for a wrong token", lambda: (message() or {}).get("kind") == "error" and message())
    checks["wrong_token_error"] = m["text"] if m else None
    field = driver.find_element(By.ID, "login-token")
    field.clear()
    field.send_keys(cfg["token"])
    driver.find_element(By.ID, "login-submit").click()
    checks["login_form_logs_in"] = bool(
        wait("row after login", lambda: q(f'tr[data-ih="{ih}"]') is not None))
    take_logs(allowed=("status of 401",))

    # 3. /?token=T from a fresh cookie jar: cookie set, 303 to /, the table shows the torrent.
    driver.delete_all_cookies()
    driver.get(base + "/?token=" + cfg["token"])
    checks["url_after_token"] = driver.current_url
    checks["row_seen"] = bool(wait("torrent row", lambda: q(f'tr[data-ih="{ih}"]') is not None))
    checks["login_hidden"] = not visible("#login")
    row = q(f'tr[data-ih="{ih}"]')
    checks["row_state"] = row.get_attribute("data-state") if row else None
    checks["row_name"] = row.find_element(By.CSS_SELECTOR, "td.name").text if row else None
    mark("page_loaded")
    take_logs()

    # 4. The add form: a .torrent file and its data directory.
    add_data = driver.find_element(By.ID, "add-data")
    add_data.clear()
    add_data.send_keys(cfg["add_data"])
    driver.find_element(By.ID, "add-file").send_keys(cfg["add_torrent"])
    driver.find_element(By.ID, "add-submit").click()
    checks["added_row_seen"] = bool(wait(
        "added torrent's row", lambda: q(f'tr[data-ih="{cfg["add_ih"]}"]') is not None))
    m = wait("message after add", lambda: message())
    checks["add_message"] = m
    take_logs()

    # 5. The same torrent again: the API's 409 shows in the message area.
    driver.find_element(By.ID, "add-file").send_keys(cfg["add_torrent"])
    driver.find_element(By.ID, "add-submit").click()
    m = wait("error for a duplicate", lambda: (message() or {}).get("kind") == "error" and message())
    checks["duplicate_error"] = m["text"] if m else None
    take_logs(allowed=("status of 409",))
    mark("added")

    # 5b. A real client downloads the added torrent whole: the page's uploaded figure for it
    # becomes exactly what the client received.
    if cfg.get("added_download_cmd"):
        got = subprocess.run(cfg["added_download_cmd"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, timeout=60)
        checks["added_download_status"] = got.returncode
        want = cfg["added_len"]
        checks["added_uploaded"] = wait("the added torrent's uploaded figure",
                                        lambda: uploaded(cfg["add_ih"]) == want and want,
                                        timeout=15) or uploaded(cfg["add_ih"])
        mark("added_downloaded")

    # 6. A real client downloads (rate-capped): the uploaded figure rises, read twice.
    env = dict(os.environ)
    env.update(cfg.get("download_env", {}))
    dl_log = open(cfg["download_log"], "w")
    download = subprocess.Popen(cfg["download_cmd"], env=env, stdout=dl_log, stderr=dl_log)
    first = wait("uploaded > 0", lambda: (uploaded(ih) or 0) > 0 and uploaded(ih), timeout=40)
    checks["uploaded_first"] = first
    second = None
    if first:
        second = wait("uploaded rises", lambda: (uploaded(ih) or 0) > first and uploaded(ih),
                      timeout=30)
    checks["uploaded_second"] = second
    checks["uploaded_text"] = q(f'tr[data-ih="{ih}"] td.uploaded').text
    mark("upload_seen")

    # 7. Clicking the row shows its peers.
    q(f'tr[data-ih="{ih}"] td.name').click()
    peer = wait("a peer row", lambda: q("#peers tr.peer"), timeout=20)
    checks["peers_visible"] = visible("#peers")
    if peer:
        checks["peer"] = {c: peer.find_element(By.CSS_SELECTOR, "td." + c).text
                          for c in ("address", "client", "rate", "uploaded", "encryption",
                                    "flags")}
    graph = q("#graph")
    wait("graph samples", lambda: int(graph.get_attribute("data-samples") or 0) >= 5, timeout=15)
    checks["graph_samples"] = int(graph.get_attribute("data-samples") or 0)
    if visible("#message"):
        q("#message").click()  # dismissed by a click
        checks["message_dismissed"] = bool(wait("message hidden", lambda: not visible("#message"), 5))
    if cfg.get("screenshot"):
        driver.execute_script("window.scrollTo(0, 0)")
        checks["screenshot"] = driver.save_screenshot(cfg["screenshot"])
    mark("peers_seen")
    take_logs()

    # 8. Remove: the first click asks "Confirm?", the second removes.
    btn = q(f'tr[data-ih="{ih}"] button.remove')
    btn.click()
    checks["confirm_text"] = wait("Confirm?", lambda: btn.text == "Confirm?" and btn.text, 5)
    checks["still_there_after_first_click"] = q(f'tr[data-ih="{ih}"]') is not None
    btn.click()
    checks["row_gone"] = bool(wait("row removed", lambda: q(f'tr[data-ih="{ih}"]') is None))
    checks["peers_closed"] = not visible("#peers")
    m = message()
    checks["remove_message"] = m
    mark("removed")
    take_logs()
except WebDriverException as e:
    errors.append(f"webdriver: {e.msg if hasattr(e, 'msg') else e}")
except Exception as e:  # noqa: BLE001 - reported to the Rust test
    errors.append(f"{type(e).__name__}: {e}")
finally:
    try:
        take_logs()
    except Exception:  # noqa: BLE001
        pass
    driver.quit()
    if download is not None:
        download.terminate()
        try:
            download.wait(5)
        except subprocess.TimeoutExpired:
            download.kill()
            download.wait()
    mark("done")

print(json.dumps({"checks": checks, "errors": errors, "console": console, "timings": timings}))
