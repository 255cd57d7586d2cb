"""Loads the corpus-search page of `tsumugi serve --index` in headless Chromium (selenium):
counts a query, lists its documents, sends a query the server refuses, and traces a pasted
text. Prints what the page shows as JSON on the last line.

Usage: search_page.py BASE_URL QUERY TRACE_TEXT
"""
import json
import sys

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    sys.exit("selenium is missing: /usr/bin/python3 -m pip install --break-system-packages -r tests/requirements-torch.txt")


def text_of(driver, css):
    """Exact textContent (selenium's .text collapses whitespace)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)


def texts_of(driver, css):
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent);", css)


def run_search(driver, wait, mode, query, ids=False):
    """Submits a query and waits until the page shows its result or its error."""
    Select(driver.find_element(By.ID, "mode")).select_by_value(mode)
    box = driver.find_element(By.ID, "ids")
    if box.is_selected() != ids:
        box.click()
    q = driver.find_element(By.ID, "q")
    q.clear()
    q.send_keys(query)
    # The result area is emptied when a search starts: wait for what this one fills in.
    driver.execute_script("document.getElementById('search-result').replaceChildren();")
    driver.find_element(By.ID, "go").click()
    wait.until(lambda d: d.find_elements(By.ID, "count-value") or d.find_element(By.ID, "search-error").is_displayed())


def main():
    base_url, query, trace_text = sys.argv[1], sys.argv[2], sys.argv[3]
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(base_url + "/search")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: "documents" in d.find_element(By.ID, "info").text
                   or "unavailable" in d.find_element(By.ID, "info").text)
        info = driver.find_element(By.ID, "info").text.replace(",", "")

        run_search(driver, wait, "count", query)
        count = (text_of(driver, "#count-value") or "").replace(",", "")

        run_search(driver, wait, "docs", query)
        marks = texts_of(driver, "#hits .hit mark")
        hits = len(driver.find_elements(By.CSS_SELECTOR, "#hits .hit"))
        search_error = driver.find_element(By.ID, "search-error").is_displayed()

        run_search(driver, wait, "count", "not-an-id", ids=True)
        bad_query_error = driver.find_element(By.ID, "search-error").text if driver.find_element(
            By.ID, "search-error").is_displayed() else ""

        driver.find_element(By.ID, "tab-trace").click()
        area = driver.find_element(By.ID, "trace-input")
        wait.until(lambda d: area.is_displayed())
        # Pasting: the text arrives whole, as a paste would put it (send_keys would type it).
        driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
                              area, trace_text)
        driver.find_element(By.ID, "trace-go").click()
        wait.until(lambda d: d.find_elements(By.ID, "trace-summary") or d.find_element(By.ID, "trace-error").is_displayed())
        trace_error = driver.find_element(By.ID, "trace-error").text
        span_rows = texts_of(driver, "#spans tr[data-span] td.snippet")
        highlighted = texts_of(driver, "#trace-text .span")
        trace_view = text_of(driver, "#trace-text")
        span_docs = len(driver.find_elements(By.CSS_SELECTOR, "#span-docs .hit"))
        console = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
        # Chromium logs the refused query's 400 as a failed resource load; that one is expected.
        console = [e for e in console
                   if not ("/v1/search/count" in e.get("message", "") and "400" in e.get("message", ""))]
        print(json.dumps({"info": info, "count": count, "marks": marks, "hits": hits, "search_error": search_error,
                          "bad_query_error": bad_query_error, "trace_error": trace_error, "span_count": len(span_rows),
                          "span_rows": span_rows, "highlighted": highlighted, "trace_view": trace_view,
                          "span_docs": span_docs, "console": console}, ensure_ascii=False))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
