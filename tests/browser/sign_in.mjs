// Drives a real Chromium through browser sign-in as a person would: the demo
// page at APP_URL/spa sends them to the issuer's login page, they type a
// wrong password, then the right one, and land back on the demo page showing
// /profile's answer; then refresh, sign out, and sign in again. Prints what
// it saw as one JSON object; the Rust test asserts on it.
//
//   node sign_in.mjs APP_URL USERNAME PASSWORD SCREENSHOT_DIR
//
// The browser is TESSERA_CHROMIUM (Debian's /usr/bin/chromium by default).
import { chromium } from "playwright-core";

const [appUrl, username, password, shots] = process.argv.slice(2);
if (!shots) {
  console.error("usage: sign_in.mjs APP_URL USERNAME PASSWORD SCREENSHOT_DIR");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.TESSERA_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
  timeout: 30_000,
});
const seen = { console_errors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 720, height: 640 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  // Script errors and CSP violations, on the demo page and the login page.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      seen.console_errors.push(m.text());
    }
  });
  page.on("pageerror", (e) => seen.console_errors.push(String(e)));
  const status = () => page.locator("#status").textContent();

  await page.goto(`${appUrl}/spa`);
  await page.click("#signin");
  // The issuer's login page, reached by the page's redirect.
  await page.locator("input[name=username]").waitFor();
  seen.login_url = page.url();
  seen.login_title = await page.title();
  seen.login_names = await page.locator(".client strong").textContent();
  seen.username_label = await page.locator("label[for=username]").textContent();
  seen.password_label = await page.locator("label[for=password]").textContent();
  seen.login_scripts = await page.locator("script").count();
  await page.screenshot({ path: `${shots}/sign-in-page.png` });

  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", "not the password");
  await page.click("button[type=submit]");
  await page.locator(".error").waitFor();
  seen.wrong_password_says = await page.locator(".error").textContent();
  seen.username_kept = await page.inputValue("input[name=username]");

  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.locator("#welcome").filter({ hasText: "Signed in as" }).waitFor();
  seen.back_at = new URL(page.url()).pathname + new URL(page.url()).search;
  seen.welcome = await page.locator("#welcome").textContent();
  seen.profile = JSON.parse(await page.locator("#profile").textContent());
  seen.signed_in_status = await status();
  await page.screenshot({ path: `${shots}/signed-in-spa.png` });
  seen.cookies = (await context.cookies()).map((c) => ({
    name: c.name,
    httpOnly: c.httpOnly,
    sameSite: c.sameSite,
    secure: c.secure,
  }));

  await page.click("#refresh");
  await page.locator("#status").filter({ hasText: "Refreshed" }).waitFor();
  seen.refresh_status = await status();

  await page.click("#signout");
  await page.locator("#status").filter({ hasText: "Signed out" }).waitFor();
  seen.signed_out_at = new URL(page.url()).pathname;
  seen.sso_cookie_after_sign_out = (await context.cookies()).some((c) =>
    c.name.endsWith("tessera_sso"),
  );

  // Signed out at the issuer too: the login form asks again.
  await page.click("#signin");
  await page.locator("input[name=password]").waitFor();
  seen.asked_again = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
