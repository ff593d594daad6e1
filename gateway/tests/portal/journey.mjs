// The patient portal in real Chromium (Debian's, driven by playwright-core), against a gateway
// the Rust test `portal::the_patient_journey_in_chromium` started and filled: a patient with a
// document at clinic A and one at clinic B, and the certificates and tokens of a GP at each.
//
// 1. The journey by mouse in English, then by keyboard alone in Finnish and in English: sign in,
//    see two documents and open one, deny clinic B after its preview, clinic B's GP is refused
//    through the API, a read by clinic A's GP appears on the open access-log page within a
//    second, withdraw the restriction, sign out.
// 2. Every page in each language: axe-core (0 serious or critical violations) and a screenshot
//    under target/portal-screenshots/.
// Any Content-Security-Policy violation reported by the browser fails the run.
//
// Usage: node journey.mjs CONFIG.json (written by the Rust test).

import fs from "node:fs";
import https from "node:https";
import path from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const base = config.base_url;
const axeSource = fs.readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");
fs.mkdirSync(config.screenshots, { recursive: true });

function fail(message) {
  throw new Error(message);
}

/** A FHIR API request as a professional (client certificate and token). */
function api(who, pathname) {
  return new Promise((resolve, reject) => {
    const request = https.request(
      base + pathname,
      {
        method: "GET",
        ca: fs.readFileSync(config.ca),
        cert: fs.readFileSync(who.cert),
        key: fs.readFileSync(who.key),
        headers: { Authorization: `Bearer ${who.token}`, Accept: "application/fhir+json" },
      },
      (response) => {
        let body = "";
        response.on("data", (chunk) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode, body }));
      },
    );
    request.on("error", reject);
    request.end();
  });
}

/** axe-core's WCAG 2.1 A and AA rules on the page: no serious or critical violation. */
async function accessible(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } }),
  );
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  if (bad.length > 0) {
    fail(`${name}: axe-core: ${bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target).join(", ")}`).join("; ")}`);
  }
  if ((await page.locator("h1").count()) !== 1) fail(`${name}: not exactly one h1`);
  if (!(await page.getAttribute("html", "lang"))) fail(`${name}: no lang`);
}

/** Tab until the focused element matches `selector`; its focus must be visible. */
async function tabTo(page, selector, limit = 80) {
  for (let i = 0; i < limit; i++) {
    await page.keyboard.press("Tab");
    const found = await page.evaluate((s) => {
      const active = document.activeElement;
      if (!active || !active.matches(s)) return null;
      const style = getComputedStyle(active);
      return { outline: style.outlineStyle, width: style.outlineWidth };
    }, selector);
    if (found) {
      if (found.outline === "none" || found.width === "0px") fail(`focus on ${selector} is not visible`);
      return;
    }
  }
  fail(`Tab never reached ${selector}`);
}

/** Chooses an option of a focused select with the arrow keys. */
async function arrowTo(page, selector, value) {
  for (let i = 0; i < 20; i++) {
    if ((await page.inputValue(selector)) === value) return;
    await page.keyboard.press("ArrowDown");
  }
  fail(`${selector}: the arrow keys never reached ${value}`);
}

async function newPage(browser, lang) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, locale: lang === "en" ? "en-GB" : `${lang}-FI` });
  const page = await context.newPage();
  page.violations = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) page.violations.push(message.text());
  });
  return page;
}

async function journey(browser, lang, keyboard) {
  const label = `${keyboard ? "keyboard" : "mouse"} journey (${lang})`;
  const page = await newPage(browser, lang);
  const act = async (selector) => {
    if (keyboard) {
      await tabTo(page, selector);
      await page.keyboard.press("Enter");
    } else {
      await page.click(selector);
    }
  };
  // 1. Sign in, two documents, open one.
  await page.goto(`${base}/portal/login?lang=${lang}`);
  if (keyboard) {
    await tabTo(page, "#hetu");
    await page.keyboard.type(config.hetu);
    await page.keyboard.press("Enter");
  } else {
    await page.fill("#hetu", config.hetu);
    await page.click('form[action="/portal/login/dev"] button');
  }
  await page.waitForURL("**/portal/documents");
  const documents = await page.locator('main tbody a[href^="/portal/documents/"]').count();
  if (documents !== 2) fail(`${label}: ${documents} documents, not 2`);
  await act('main tbody a[href^="/portal/documents/"]');
  await page.waitForURL(/\/portal\/documents\/[^/]+$/);
  await page.locator("#note").waitFor();

  // 2. Deny clinic B: the preview, then save.
  if ((await api(config.gp_b, `/Patient/${config.patient_id}`)).status !== 200) fail(`${label}: clinic B's GP could not read before`);
  await act('header a[href="/portal/restrictions"]');
  await page.waitForURL("**/portal/restrictions");
  if (keyboard) {
    await tabTo(page, "#organisation");
    await arrowTo(page, "#organisation", config.clinic_b);
  } else {
    await page.selectOption("#organisation", config.clinic_b);
  }
  await act('button[value="preview"]');
  await page.locator('[data-audience="other-clinic"][data-state="with"]').waitFor();
  const withAfter = await page.locator('[data-audience="other-clinic"][data-state="with"] li[data-resource]').count();
  const without = await page.locator('[data-audience="other-clinic"][data-state="without"] li[data-resource]').count();
  if (!(withAfter === 0 && without > 0)) fail(`${label}: the preview shows clinic B ${without} → ${withAfter}`);
  await act('main form button[type="submit"]');
  await page.waitForURL("**/portal/restrictions?saved=1");

  // 3. Clinic B's GP is now refused through the API.
  const refused = await api(config.gp_b, `/Patient/${config.patient_id}`);
  if (refused.status !== 404) fail(`${label}: clinic B's GP got ${refused.status} after the denial`);

  // 4. A read by clinic A's GP appears on the open access-log page within a second.
  await act('header a[href="/portal/access-log"]');
  await page.waitForURL("**/portal/access-log");
  await page.waitForTimeout(600);
  const rows = await page.locator("#entries tr").count();
  const started = Date.now();
  const read = await api(config.gp_a, `/Patient/${config.patient_id}`);
  if (read.status !== 200) fail(`${label}: clinic A's GP got ${read.status}`);
  await page.waitForFunction((n) => document.querySelectorAll("#entries tr").length > n, rows, { timeout: 1000 });
  const shown = Date.now() - started;
  const top = await page.locator("#entries tr").first().innerText();
  if (!top.includes(config.gp_a.terhikki)) fail(`${label}: the new entry does not name clinic A's GP: ${top}`);

  // 5. Withdraw the restriction (preview, then confirm); clinic B's GP reads again.
  await act('header a[href="/portal/restrictions"]');
  await page.waitForURL("**/portal/restrictions");
  await act('form[action$="/withdraw"] button');
  await page.locator('[data-audience="other-clinic"][data-state="with"]').waitFor();
  await act('main form button[type="submit"]');
  await page.waitForURL("**/portal/restrictions?withdrawn=1");
  if ((await api(config.gp_b, `/Patient/${config.patient_id}`)).status !== 200) fail(`${label}: still refused after withdrawal`);

  // 6. Sign out; the documents are then behind the sign-in page.
  await act('header form[action="/portal/logout"] button');
  await page.waitForURL("**/portal/login?signed_out=1");
  await page.goto(`${base}/portal/documents`);
  if (!page.url().includes("/portal/login")) fail(`${label}: documents shown after sign-out`);
  if (page.violations.length > 0) fail(`${label}: ${page.violations.join("; ")}`);
  console.log(`${label}: passed; the GP's read appeared after ${shown} ms`);
  await page.context().close();
}

/** Every page in one language: axe-core and a screenshot each. */
async function pages(browser, lang) {
  const page = await newPage(browser, lang);
  const shot = async (name) => {
    await accessible(page, `${lang}/${name}`);
    await page.screenshot({ path: path.join(config.screenshots, `${lang}-${name}.png`), fullPage: true });
  };
  await page.goto(`${base}/portal/login?lang=${lang}`);
  await shot("sign-in");
  await page.fill("#hetu", config.hetu);
  await page.click('form[action="/portal/login/dev"] button');
  await page.waitForURL("**/portal/documents");
  await shot("documents");
  await page.click('main tbody a[href^="/portal/documents/"]');
  await page.locator("#note").waitFor();
  await shot("document");
  await page.goto(`${base}/portal/access-log`);
  await shot("access-log");
  await page.goto(`${base}/portal/restrictions`);
  await shot("restrictions");
  await page.check("#kind-everyone");
  await page.click('button[value="preview"]');
  await page.locator('[data-audience="gp"]').first().waitFor();
  await shot("preview");
  await page.goto(`${base}/portal/documents/no-such-document`);
  await shot("not-found");
  if (page.violations.length > 0) fail(`${lang} pages: ${page.violations.join("; ")}`);
  console.log(`${lang}: 7 pages accessible (axe-core: 0 serious or critical), screenshots written`);
  await page.context().close();
}

const browser = await chromium.launch({ executablePath: config.chromium, args: ["--no-sandbox"] });
try {
  await journey(browser, "en", false);
  await journey(browser, "fi", true);
  await journey(browser, "en", true);
  for (const lang of ["fi", "sv", "en"]) {
    await pages(browser, lang);
  }
} finally {
  await browser.close();
}
