#!/usr/bin/env python3
"""Drives the SwiftESB dashboard in a real headless Chromium (selenium, Debian's chromedriver)
as a user would, and checks each step against the admin API. Prints one line per step; exits
non-zero naming the first step that failed.

Usage: dashboard_check.py --url URL --password P --broker-host H --broker-port N --queue Q
                          --failed-unit FILE.swift [--screenshots DIR]"""
import argparse, base64, json, os, sys, time, urllib.error, urllib.parse, urllib.request
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

def main():
    parser = argparse.ArgumentParser()
    for name in ("url", "password", "broker-host", "broker-port", "queue", "failed-unit"):
        parser.add_argument("--" + name, required=True)
    parser.add_argument("--screenshots")
    args = parser.parse_args()
    base = args.url.rstrip("/")

    def api(method, path, body=None, cookie=None, auth=True):
        request = urllib.request.Request(base + path, data=body, method=method)
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{args.password}".encode()).decode())
        if cookie:
            request.add_header("Cookie", cookie)
        if body is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=30) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def check(condition, step):
        if not condition:
            shot("failure")
            print(f"FAILED: {step}\nURL: {driver.current_url}\nPAGE:\n{driver.find_element(By.TAG_NAME, 'body').text[:3000]}")
            sys.exit(1)
        print(f"ok: {step}")

    def shot(name):
        if args.screenshots:
            os.makedirs(args.screenshots, exist_ok=True)
            driver.save_screenshot(os.path.join(args.screenshots, f"dashboard-{name}.png"))

    def fill(form, values):
        for name, value in values.items():
            element = form.find_element(By.NAME, name)
            if element.tag_name == "select":
                Select(element).select_by_value(value)
            else:
                element.clear()
                element.send_keys(value)

    def submit(form_id, values=None):
        form = driver.find_element(By.ID, form_id)
        fill(form, values or {})
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 30).until(lambda _: gone(form))  # the answer page has loaded

    def gone(element):
        """Whether `element` left the document. While the next page replaces it, Chrome may
        answer with an inspector error ("Node with given id does not belong to the document")
        instead of a stale-element error: both mean it is gone."""
        try:
            element.is_enabled()
            return False
        except WebDriverException:
            return True

    def text():
        return driver.find_element(By.TAG_NAME, "body").text

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"  # Debian's; selenium must not go looking for (or fetch) another
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,900", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        # Without a session: pages send you to sign-in, anything else is refused.
        status, headers, _ = api("GET", "/esb/dashboard/services", auth=False)
        check(status == 302 and "/esb/dashboard/login" in headers.get("Location", ""), "a page without a session redirects to sign-in")
        status, _, body = api("POST", "/esb/dashboard/objects/def_sec", b"name=x&username=y", auth=False)
        check(status == 403, "a form post without a session is refused (403)")
        status, _, _ = api("GET", "/esb/dashboard/services", auth=True)
        check(status == 302, "HTTP basic auth is not a dashboard session")

        driver.get(base + "/esb/dashboard/services")
        check("/esb/dashboard/login" in driver.current_url, "the browser lands on sign-in")
        shot("sign-in")
        submit("sign-in", {"username": "admin", "password": "wrong"})
        check("Wrong user name or password" in text(), "a wrong password is refused")
        submit("sign-in", {"username": "admin", "password": args.password})
        check(driver.current_url.endswith("/esb/dashboard/services"), "signing in returns to the page asked for")

        submit("invoke", {"payload": "hello from the browser"})
        check("hello from the browser" in driver.find_element(By.ID, "invoke-result").text, "the invoke form shows the response")
        shot("services")

        driver.get(base + "/esb/dashboard/objects/def_amqp")
        submit("create", {"name": "dash-broker", "host": args.broker_host, "port": args.broker_port,
                          "username": "guest", "password": "guest"})
        check("Created AMQP definition 'dash-broker'" in text(), "an AMQP definition created through the form")

        driver.get(base + "/esb/dashboard/objects/outconn_amqp")
        submit("create", {"name": "dash-out", "def": "dash-broker", "pool_size": "1"})
        check("Created outgoing AMQP connection 'dash-out'" in text(), "an outgoing AMQP connection created through the form")
        status, _, body = api("GET", "/esb/api/outgoing/amqp/dash-out")
        created = json.loads(body) if status == 200 else {}
        check(created.get("def") == "dash-broker" and created.get("pool_size") == 1, "the API sees it as created")

        link = driver.find_element(By.LINK_TEXT, "dash-out")
        link.click()
        WebDriverWait(driver, 30).until(lambda _: gone(link))
        submit("edit", {"priority": "8"})
        check("Saved." in text(), "edited through the form")
        status, _, body = api("GET", "/esb/api/outgoing/amqp/dash-out")
        check(status == 200 and json.loads(body).get("priority") == 8, "the API sees the edit")

        for _ in range(100):  # the pool connects in the background
            if "1/1 connected" in driver.find_element(By.ID, "pool-status").text:
                break
            time.sleep(0.1)
            driver.refresh()
        check("1/1 connected" in driver.find_element(By.ID, "pool-status").text, "the live pool state shows the connection")
        submit("publish", {"routing_key": args.queue, "payload": "published from the dashboard"})
        check("confirmed by the broker" in text(), "a test publish is confirmed")
        shot("outgoing-amqp")

        # A form post without the CSRF token is refused, in the browser and without it.
        driver.execute_script("var f = document.getElementById('edit'); f.querySelector('input[name=csrf]').remove();")
        submit("edit", {"priority": "2"})
        check("CSRF token is missing or wrong" in text(), "the browser's form without the CSRF token is refused")
        cookie = "esb_session=" + driver.get_cookie("esb_session")["value"]
        status, _, _ = api("POST", "/esb/dashboard/objects/outconn_amqp/dash-out", b"priority=3", cookie=cookie, auth=False)
        check(status == 403, "a post with the session but no CSRF token is refused (403)")
        status, _, _ = api("POST", "/esb/dashboard/objects/outconn_amqp/dash-out", b"priority=3&csrf=forged", cookie=cookie, auth=False)
        check(status == 403, "a post with a wrong CSRF token is refused (403)")
        status, _, body = api("GET", "/esb/api/outgoing/amqp/dash-out")
        check(json.loads(body).get("priority") == 8, "nothing was changed by the refused posts")

        driver.get(base + "/esb/dashboard/deployments")
        row = [r for r in driver.find_elements(By.CSS_SELECTOR, "#deployments tbody tr") if args.failed_unit in r.text]
        check(row and "failed" in row[0].text and "error:" in row[0].find_element(By.CSS_SELECTOR, "pre.diagnostics").text,
              "a failed deployment shows its compiler diagnostics")
        shot("deployments")

        driver.get(base + "/esb/dashboard/")
        check("amqp.dash-out" in driver.find_element(By.ID, "components").text, "the overview lists the components")
        shot("overview")

        driver.get(base + "/esb/dashboard/enmasse")
        submit("enmasse-import", {"file": "def_sec:\n  - name: dash-sec\n    username: u\n"})
        check("1 created" in driver.find_element(By.ID, "enmasse-result").text, "an enmasse import through the page")
        shot("enmasse")
        status, _, body = api("GET", "/esb/api/security/basic-auth/dash-sec")
        check(status == 200, "the API sees the imported object")
        check("has no password" in driver.find_element(By.ID, "enmasse-result").text,
              "the import says which basic-auth definition came without a password")

        # Delete asks first. The question is a data- attribute read by the one static script
        # (the Content-Security-Policy allows no inline script); quotes and markup in the name
        # are shown as written and run nothing.
        odd = "it's \"odd\" <b>x"
        status, _, _ = api("POST", "/esb/api/security/basic-auth", json.dumps({"name": odd, "username": "u"}).encode())
        check(status == 201, "a definition whose name holds quotes and markup")
        odd_path = "/esb/api/security/basic-auth/" + urllib.parse.quote(odd, safe="")
        driver.get(base + "/esb/dashboard/objects/def_sec/" + urllib.parse.quote(odd, safe=""))
        driver.find_element(By.ID, "delete").find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        alert = WebDriverWait(driver, 10).until(expected_conditions.alert_is_present())
        check(alert.text == f"Delete basic-auth definition '{odd}'?", "delete asks for confirmation, naming the object as written")
        alert.dismiss()
        check(api("GET", odd_path)[0] == 200, "dismissing the confirmation deletes nothing")
        delete = driver.find_element(By.ID, "delete")
        delete.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 10).until(expected_conditions.alert_is_present()).accept()
        WebDriverWait(driver, 30).until(lambda _: gone(delete))
        check(f"Deleted basic-auth definition '{odd}'" in text(), "accepting it deletes the object")
        check(api("GET", odd_path)[0] == 404, "the API sees it deleted")

        driver.get(base + "/esb/dashboard/objects/channel_plain_http")
        shot("channels")
        driver.get(base + "/esb/dashboard/startup")
        shot("startup")

        submit("sign-out")
        driver.get(base + "/esb/dashboard/services")
        check("/esb/dashboard/login" in driver.current_url, "after signing out pages need sign-in again")
    finally:
        driver.quit()
    print("all dashboard checks passed")

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

if __name__ == "__main__":
    main()
