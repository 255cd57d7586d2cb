"""Loads the chat page of `tsumugi serve` in headless Chromium (selenium), sends a message with
temperature 0 and waits for the streamed answer. Prints {"answer", "meta", "console"} as JSON.

Usage: chat_page.py BASE_URL MESSAGE MAX_TOKENS
"""
import json
import sys

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    sys.exit("selenium is missing: /usr/bin/python3 -m pip install --break-system-packages -r tests/requirements-torch.txt")


def main():
    base_url, message, max_tokens = sys.argv[1], sys.argv[2], sys.argv[3]
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(base_url + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_element(By.ID, "model-name").text != "")
        driver.find_element(By.TAG_NAME, "summary").click()  # open the settings
        for field, value in (("temperature", "0"), ("max-tokens", max_tokens)):
            box = driver.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        driver.find_element(By.ID, "input").send_keys(message)
        driver.find_element(By.ID, "send").click()
        # The bubble carries the class "streaming" until the answer is complete.
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant")) == 1)
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".msg.assistant.streaming")
                   and d.find_element(By.ID, "send").is_enabled())
        bubble = driver.find_element(By.CSS_SELECTOR, ".msg.assistant")
        pieces = int(bubble.get_attribute("data-pieces") or 0)
        meta = bubble.find_element(By.CSS_SELECTOR, ".meta").text
        answer = driver.execute_script(
            "const b = document.querySelector('.msg.assistant'); return b.firstChild.nodeType === 3 ? b.firstChild.data : '';")
        error = driver.find_element(By.ID, "error")
        error_shown, error_text = error.is_displayed(), error.text
        user = driver.find_element(By.CSS_SELECTOR, ".msg.user").text
        console = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
        # A request the server refuses (max_tokens 0) shows its error message on the page.
        box = driver.find_element(By.ID, "max-tokens")
        box.clear()
        box.send_keys("0")
        driver.find_element(By.ID, "input").send_keys("もう一度")
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
        print(json.dumps({"answer": answer, "meta": meta, "pieces": pieces, "error_shown": error_shown,
                          "error_text": error_text, "user": user, "console": console,
                          "refused_error": driver.find_element(By.ID, "error").text}, ensure_ascii=False))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
