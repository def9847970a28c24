"""The chat page `serve` answers GET / with, in headless Chromium through selenium: the model
picker, a streamed reply growing in place, a second turn on an adapter equal to the API's greedy
answer for the same conversation, stop, new chat, and an error in the status line.

Run through tests/clients/run.sh (it makes the venv with selenium); needs Debian's chromium and
chromium-driver (scripts/install-deps.sh).
"""

import json
import os
import shutil
import tempfile
import unittest
import urllib.request

import harness

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
    from selenium.common.exceptions import StaleElementReferenceException
except ImportError:
    webdriver = None

CHROMIUM = os.environ.get("LA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LA_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
MAX_TOKENS = 200  # long enough to watch a reply grow; two turns and their replies fit the 512-token context
USER1 = "Tell me a story about a cat."
USER2 = "What did <b>Tom</b> & Lily do next?"  # markup stays text
USER3 = "Tell me a long story."


def setUpModule():
    if webdriver is None:
        raise unittest.SkipTest("the selenium package is not installed (tests/clients/run.sh installs it)")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            raise unittest.SkipTest(f"no {path} (Debian's {package}; scripts/install-deps.sh installs it)")
    harness.require_cli_and_model()


class ChatPageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.temp_folder("la-clients-page-")
        cls.adapters = dict(zip(["ad-a", "ad-b"], harness.make_adapters(cls.tmp.name)))
        cls.server = harness.Server("--parallel", "2", adapters=cls.adapters.items())
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROME_FLAGS:
            options.add_argument(flag)
        cls.profile = tempfile.mkdtemp(prefix="la-chromium-")
        options.add_argument("--user-data-dir=" + cls.profile)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, read at the end
        try:
            cls.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        except Exception:
            cls.server.kill()
            cls.tmp.cleanup()
            shutil.rmtree(cls.profile, ignore_errors=True)
            raise
        cls.driver.set_window_size(1100, 800)

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        cls.server.kill()
        cls.tmp.cleanup()
        shutil.rmtree(cls.profile, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------------
    def find(self, element_id):
        return self.driver.find_element(By.ID, element_id)

    def wait(self, condition, timeout=30, what="condition"):
        # The page rebuilds some elements (the model picker's options when the list changes): one
        # that went stale between finding and reading it means "not yet", so poll again.
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.02,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: condition())
        except Exception:
            self.fail(f"timed out waiting for {what}; status line: {self.find('status').text!r}\n"
                      f"server stderr:\n{self.server.stderr()}")

    def assistant_texts(self):
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#messages .msg.assistant')].map(e => e.textContent)")

    def streaming(self):
        return self.driver.find_elements(By.CSS_SELECTOR, "#messages .msg.assistant.streaming")

    def set_field(self, element_id, value):
        field = self.find(element_id)
        field.clear()
        field.send_keys(str(value))

    def api_chat(self, model, messages):
        """The non-streamed API's greedy reply (what the page must show at temperature 0)."""
        body = {"model": model, "messages": messages, "temperature": 0, "max_tokens": MAX_TOKENS}
        req = urllib.request.Request(self.server.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["choices"][0]["message"]["content"]

    def watch_lengths(self):
        """Records, in the page, every length the streaming assistant message has had."""
        self.driver.execute_script("""
            window.__lengths = [];
            new MutationObserver(() => {
              const a = document.querySelector('#messages .msg.assistant.streaming');
              const n = a ? a.textContent.length : 0;
              if (n && window.__lengths[window.__lengths.length - 1] !== n) window.__lengths.push(n);
            }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
        """)

    def throttle(self, on):
        # The reply streams from a 260K-parameter model in tens of milliseconds; a slow emulated
        # network spreads its chunks over a second, so that growing in place can be seen.
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0,
            "downloadThroughput": 20000 if on else -1, "uploadThroughput": -1})

    # --- the test --------------------------------------------------------------------------------
    def test_chat(self):
        d = self.driver
        d.get(self.server.url + "/")
        picker = Select(self.find("model"))
        models = [harness.BASE, *self.adapters]
        self.wait(lambda: len(picker.options) == len(models), 10, "the model picker")
        self.assertEqual([o.get_attribute("value") for o in picker.options], models)  # the base first
        self.assertEqual(picker.first_selected_option.get_attribute("value"), harness.BASE)
        self.assertFalse(self.find("image").is_displayed(), "image attach shown for a model without vision")
        self.assertFalse(self.find("stop").is_displayed())
        self.assertEqual(self.find("temperature").get_attribute("value"), "0.7")  # the default
        self.set_field("temperature", 0)
        self.set_field("max_tokens", MAX_TOKENS)

        # Turn 1, on the base, sent with Enter: the reply grows in place while .streaming.
        self.watch_lengths()
        self.throttle(True)
        field = self.find("input")
        field.send_keys(USER1)
        field.send_keys(Keys.ENTER)
        self.wait(lambda: self.streaming(), 10, "the reply to start")
        self.assertTrue(self.find("stop").is_displayed(), "no stop button while streaming")
        self.wait(lambda: not self.streaming(), 60, "the first reply to finish")
        self.throttle(False)
        lengths = d.execute_script("return window.__lengths")
        self.assertGreaterEqual(len(set(lengths)), 2, f"the reply did not grow while streaming: {lengths}")
        self.assertFalse(self.find("stop").is_displayed())
        self.assertEqual(field.get_attribute("value"), "")
        users = d.execute_script("return [...document.querySelectorAll('#messages .msg.user')].map(e => e.textContent)")
        self.assertEqual(users, [USER1])
        reply1 = self.assistant_texts()[0]
        self.assertTrue(reply1)
        conversation = [{"role": "user", "content": USER1}]
        self.assertEqual(reply1, self.api_chat(harness.BASE, conversation), "page and API disagree at temperature 0")
        self.assertNotIn("err", self.find("status").get_attribute("class"))
        self.assertIn("tokens", self.find("status").text)

        # Turn 2 on an adapter, sent with the button: the history stays, the adapter answers.
        picker.select_by_value("ad-a")
        self.set_field("input", USER2)
        self.find("send").click()
        self.wait(lambda: len(self.assistant_texts()) == 2 and not self.streaming(), 60, "the second reply")
        reply2 = self.assistant_texts()[1]
        conversation += [{"role": "assistant", "content": reply1}, {"role": "user", "content": USER2}]
        self.assertEqual(reply2, self.api_chat("ad-a", conversation))
        self.assertNotEqual(reply2, self.api_chat(harness.BASE, conversation), "the base answers the same")
        self.assertEqual(self.assistant_texts()[0], reply1)
        self.assertEqual(d.find_elements(By.CSS_SELECTOR, "#messages b"), [], "user text was parsed as HTML")
        self.assertEqual(
            d.execute_script("return document.querySelectorAll('#messages .msg.assistant')[1].dataset.model"), "ad-a")

        # Turn 3 no longer fits the 512-token context with the whole history (the server answers
        # 400): the page leaves the oldest exchange out and sends again. Stopped part-way (slowed
        # down again so there is time to).
        self.throttle(True)
        self.set_field("input", USER3)
        self.find("send").click()
        self.wait(lambda: self.streaming() and self.assistant_texts()[-1], 10, "the third reply to start")
        self.find("stop").click()
        self.wait(lambda: not self.streaming(), 10, "the reply to stop")
        self.throttle(False)
        self.assertFalse(self.find("stop").is_displayed())
        self.assertTrue(self.find("send").is_enabled())
        dropped = d.execute_script(
            "return [...document.querySelectorAll('#messages .msg.dropped')].map(e => e.textContent)")
        self.assertEqual(dropped, [USER1, reply1])
        self.assertIn("left out", self.find("status").text)
        self.assertIn("stopped", self.find("status").text)
        self.assertEqual(len(self.assistant_texts()), 3)

        # New chat empties the conversation.
        self.find("clear").click()
        self.assertEqual(d.find_elements(By.CSS_SELECTOR, "#messages .msg"), [])

        # An error shows in the status line: the selected adapter is removed behind the page's back.
        picker.select_by_value("ad-b")
        status, body = self.server.json("DELETE", "/v1/adapters/ad-b")
        self.assertEqual(status // 100, 2, body)
        self.set_field("input", USER1)
        self.find("send").click()
        self.wait(lambda: "404" in self.find("status").text, 10, "the 404 in the status line")
        self.assertIn("err", self.find("status").get_attribute("class"))
        self.assertEqual(self.find("input").get_attribute("value"), USER1, "the failed message was not given back")
        self.assertEqual(d.find_elements(By.CSS_SELECTOR, "#messages .msg"), [])
        self.wait(lambda: [o.get_attribute("value") for o in picker.options] == [harness.BASE, "ad-a"], 10,
                  "the picker to drop the removed adapter")
        self.assertIn("404", self.find("status").text)  # the refresh keeps the error shown
        # Script errors only: the 400 and 404 above are logged as failed loads ("network").
        logs = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
        self.assertEqual(logs, [], "errors in the page's console")


if __name__ == "__main__":
    unittest.main()
