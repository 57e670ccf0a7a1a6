// Drives a real Chromium through the demo page at APP_URL/app, as a user
// would: sign in, see the welcome, refresh, save a note, sign out. Prints
// what it saw as one JSON object; the Rust test asserts on it.
//
//   node session.mjs APP_URL USERNAME PASSWORD SCREENSHOT_DIR
//
// The browser is TESSERA_CHROMIUM (Debian's /usr/bin/chromium by default).
import { chromium } from "playwright-core";

const [appUrl, username, password, shots] = process.argv.slice(2);
if (!shots) {
  console.error("usage: session.mjs APP_URL USERNAME PASSWORD SCREENSHOT_DIR");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.TESSERA_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Root in CI containers: Chromium's sandbox needs user namespaces.
  args: ["--no-sandbox"],
  timeout: 30_000,
});
const seen = { console_errors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  // Script errors and CSP violations; not the 401s the page expects
  // (Chromium logs each as "Failed to load resource").
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      seen.console_errors.push(m.text());
    }
  });
  page.on("pageerror", (e) => seen.console_errors.push(String(e)));
  const status = () => page.locator("#status").textContent();
  const tessera = async () =>
    (await context.cookies()).filter((c) => c.name.startsWith("tessera_"));

  await page.goto(`${appUrl}/app`);
  await page.locator("#signin").waitFor();
  seen.signed_out_at_start = await page.locator("#session").isHidden();

  // A wrong password first: the page says so, no cookie arrives.
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", "not the password");
  await page.click("button[type=submit]");
  await page.waitForFunction(() => document.getElementById("status").textContent !== "");
  seen.wrong_password_status = await status();
  seen.cookies_after_wrong_password = (await tessera()).length;

  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.locator("#welcome").filter({ hasText: "Welcome" }).waitFor();
  seen.welcome = await page.locator("#welcome").textContent();
  seen.facts = await page.locator("#facts").textContent();
  seen.document_cookie_signed_in = await page.evaluate(() => document.cookie);
  const signedIn = await tessera();
  seen.cookies_signed_in = signedIn.map((c) => ({
    name: c.name,
    httpOnly: c.httpOnly,
    sameSite: c.sameSite,
    path: c.path,
    secure: c.secure,
  }));
  await page.screenshot({ path: `${shots}/signed-in.png` });

  const before = signedIn.find((c) => c.name === "tessera_access")?.value;
  await page.click("#refresh");
  await page.locator("#status").filter({ hasText: "Refreshed" }).waitFor();
  const after = (await tessera()).find((c) => c.name === "tessera_access")?.value;
  seen.access_cookie_rotated = Boolean(before && after && before !== after);
  seen.document_cookie_refreshed = await page.evaluate(() => document.cookie);

  await page.click("#note");
  await page.locator("#status").filter({ hasText: "Note" }).waitFor();
  seen.note_status = await status();

  // A reload keeps the session (the cookies do, not the page).
  await page.reload();
  await page.locator("#welcome").filter({ hasText: "Welcome" }).waitFor();
  seen.welcome_after_reload = await page.locator("#welcome").textContent();

  await page.click("#signout");
  await page.locator("#status").filter({ hasText: "Signed out" }).waitFor();
  seen.signout_status = await status();
  seen.signin_form_back = await page.locator("#signin").isVisible();
  seen.cookies_after_signout = (await tessera()).length;
  await page.screenshot({ path: `${shots}/signed-out.png` });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
