// The checkpoint page: sign in with the device credential, scan QR codes with the camera (zxing-wasm),
// verify each with POST /v1/verify, show the verdict full-screen.
//
// What it keeps: the credential (and the chosen language) in sessionStorage, which the browser erases
// when the tab closes; nothing in localStorage, cookies, IndexedDB or caches. The holder's data lives
// only in the verdict's text nodes and is removed from the DOM when the officer moves on.
"use strict";

(() => {
  const CREDENTIAL_KEY = "checkpoint.credential";
  const LANGUAGE_KEY = "checkpoint.language";
  const SCAN_INTERVAL_MS = 250; // about four frames a second
  const GONE_AFTER_MS = 1500; // a code not seen for this long may be verified again
  const MAX_FRAME_SIDE = 1280; // larger camera frames are scaled down before decoding
  const READER_OPTIONS = { formats: ["QRCode"], tryHarder: true, maxNumberOfSymbols: 1 };
  const WASM_URL = new URL("vendor/zxing/zxing_reader.wasm", document.baseURI).href;

  const TEXTS = {
    vi: {
      title: "Kiểm tra chứng nhận",
      otherLanguage: "English",
      otherLanguageShort: "EN",
      signOut: "Đăng xuất",
      signInTitle: "Đăng nhập thiết bị",
      signInHint:
        "Dán mã thiết bị (bắt đầu bằng ctk_) do quản trị viên cấp. Mã chỉ được giữ trong thẻ trình duyệt này và bị xoá khi đóng thẻ.",
      tokenLabel: "Mã thiết bị",
      signIn: "Đăng nhập",
      signingIn: "Đang kiểm tra mã thiết bị…",
      tokenMissing: "Hãy dán mã thiết bị.",
      signInAgain: "Hãy đăng nhập lại.",
      manualTitle: "Nhập mã thủ công",
      manualLabel: "Dán nội dung mã QR (bắt đầu bằng HC1:)",
      manualSubmit: "Kiểm tra",
      startingCamera: "Đang bật camera…",
      pointCamera: "Đưa mã QR vào trong khung",
      checking: "Đang kiểm tra…",
      alreadyShown: "Mã này vừa được kiểm tra. Hãy đưa mã tiếp theo.",
      cameraDenied: "Chưa được phép dùng camera. Hãy cho phép camera hoặc nhập mã thủ công.",
      cameraUnavailable: "Không mở được camera. Hãy nhập mã thủ công.",
      readerUnavailable: "Không tải được bộ đọc mã QR. Hãy nhập mã thủ công.",
      holder: "Họ và tên",
      dateOfBirth: "Ngày sinh",
      testType: "Loại xét nghiệm",
      entryType: "Loại chứng nhận",
      sampleCollectedAt: "Thời điểm lấy mẫu",
      validUntil: "Có giá trị đến",
      certificateId: "Mã chứng nhận",
      compareHint: "Đối chiếu họ tên và ngày sinh với giấy tờ tùy thân.",
      scanNext: "Quét tiếp",
      accept: "CHO QUA",
      acceptWithWarning: "CHO QUA, CÓ CẢNH BÁO",
      refuse: "KHÔNG CHO QUA",
      problemTitle: "Không kiểm tra được",
      problemHint: "Đây không phải là kết quả kiểm tra. Hãy thử lại.",
      tryAgain: "Thử lại",
      networkError: "Không kết nối được máy chủ. Hãy kiểm tra mạng rồi thử lại.",
      serverError: "Máy chủ đang gặp sự cố. Hãy thử lại sau giây lát.",
      credentialRejected: "Mã thiết bị không hợp lệ hoặc đã bị thu hồi.",
      notAllowed: "Mã này không phải của thiết bị kiểm tra.",
      tooMany: "Quá nhiều yêu cầu; hãy chờ một lát rồi thử lại.",
      requestFailed: "Yêu cầu không thành công",
      badAnswer: "Không đọc được câu trả lời của máy chủ.",
      verdicts: {
        VERDICT_VALID: "HỢP LỆ",
        VERDICT_EXPIRED: "HẾT HIỆU LỰC",
        VERDICT_NOT_YET_VALID: "CHƯA CÓ HIỆU LỰC",
        VERDICT_TEST_POSITIVE: "DƯƠNG TÍNH",
        VERDICT_REVOKED: "ĐÃ BỊ THU HỒI",
        VERDICT_RULE_NOT_MET: "KHÔNG ĐẠT QUY ĐỊNH",
        VERDICT_SIGNATURE_INVALID: "CHỮ KÝ KHÔNG HỢP LỆ",
        VERDICT_UNKNOWN_ISSUER: "NƠI CẤP KHÔNG ĐƯỢC TIN CẬY",
        VERDICT_MALFORMED: "MÃ KHÔNG HỢP LỆ",
        VERDICT_STATUS_UNKNOWN: "CHƯA XÁC MINH ĐƯỢC",
        other: "KHÔNG HỢP LỆ",
      },
      testTypes: {
        TEST_TYPE_NAAT: "Xét nghiệm PCR (NAAT)",
        TEST_TYPE_RAPID_ANTIGEN: "Test nhanh kháng nguyên",
        other: "Xét nghiệm khác",
      },
      entryTypes: {
        ENTRY_TYPE_VACCINATION: "Tiêm chủng",
        ENTRY_TYPE_RECOVERY: "Đã khỏi bệnh",
      },
    },
    en: {
      title: "Certificate check",
      otherLanguage: "Tiếng Việt",
      otherLanguageShort: "VI",
      signOut: "Sign out",
      signInTitle: "Sign in this device",
      signInHint:
        "Paste the device credential (starting with ctk_) from your administrator. It is kept in this browser tab only and is erased when the tab closes.",
      tokenLabel: "Device credential",
      signIn: "Sign in",
      signingIn: "Checking the credential…",
      tokenMissing: "Paste the device credential.",
      signInAgain: "Please sign in again.",
      manualTitle: "Enter the code by hand",
      manualLabel: "Paste the QR code's text (starting with HC1:)",
      manualSubmit: "Check",
      startingCamera: "Starting the camera…",
      pointCamera: "Hold the QR code inside the frame",
      checking: "Checking…",
      alreadyShown: "This code was just checked. Show the next one.",
      cameraDenied: "The camera is not allowed. Allow it, or enter the code by hand.",
      cameraUnavailable: "The camera could not be opened. Enter the code by hand.",
      readerUnavailable: "The QR reader could not be loaded. Enter the code by hand.",
      holder: "Name",
      dateOfBirth: "Date of birth",
      testType: "Test type",
      entryType: "Certificate type",
      sampleCollectedAt: "Sample taken",
      validUntil: "Valid until",
      certificateId: "Certificate ID",
      compareHint: "Compare the name and date of birth with the ID card.",
      scanNext: "Scan next",
      accept: "ACCEPT",
      acceptWithWarning: "ACCEPT WITH WARNING",
      refuse: "REFUSE",
      problemTitle: "Could not check",
      problemHint: "This is not a verdict. Try again.",
      tryAgain: "Try again",
      networkError: "The server cannot be reached. Check the network and try again.",
      serverError: "The server has a problem. Try again in a moment.",
      credentialRejected: "The device credential is not valid or was revoked.",
      notAllowed: "This credential is not a checkpoint device's.",
      tooMany: "Too many requests; wait a moment and try again.",
      requestFailed: "The request failed",
      badAnswer: "The server's answer could not be read.",
      verdicts: {
        VERDICT_VALID: "VALID",
        VERDICT_EXPIRED: "EXPIRED",
        VERDICT_NOT_YET_VALID: "NOT YET VALID",
        VERDICT_TEST_POSITIVE: "TEST POSITIVE",
        VERDICT_REVOKED: "REVOKED",
        VERDICT_RULE_NOT_MET: "RULE NOT MET",
        VERDICT_SIGNATURE_INVALID: "INVALID SIGNATURE",
        VERDICT_UNKNOWN_ISSUER: "UNKNOWN ISSUER",
        VERDICT_MALFORMED: "INVALID CODE",
        VERDICT_STATUS_UNKNOWN: "STATUS UNKNOWN",
        other: "NOT VALID",
      },
      testTypes: {
        TEST_TYPE_NAAT: "PCR test (NAAT)",
        TEST_TYPE_RAPID_ANTIGEN: "Rapid antigen test",
        other: "Other test",
      },
      entryTypes: {
        ENTRY_TYPE_VACCINATION: "Vaccination",
        ENTRY_TYPE_RECOVERY: "Recovery",
      },
    },
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    langToggle: $("lang-toggle"),
    signOut: $("sign-out"),
    signinScreen: $("signin-screen"),
    signinForm: $("signin-form"),
    tokenInput: $("token-input"),
    signinButton: $("signin-button"),
    signinError: $("signin-error"),
    scanScreen: $("scan-screen"),
    video: $("camera"),
    scanStatus: $("scan-status"),
    manual: $("manual"),
    manualInput: $("manual-input"),
    manualSubmit: $("manual-submit"),
    verdict: $("verdict"),
    verdictWord: $("verdict-word"),
    verdictAction: $("verdict-action"),
    verdictReason: $("verdict-reason"),
    holderName: $("holder-name"),
    holderNameLatin: $("holder-name-latin"),
    holderDob: $("holder-dob"),
    testType: $("test-type"),
    sampleTime: $("sample-time"),
    validUntil: $("valid-until"),
    certificateId: $("certificate-id"),
    facts: $("facts"),
    compareHint: $("compare-hint"),
    scanNext: $("scan-next"),
    problem: $("problem"),
    problemMessage: $("problem-message"),
    problemDismiss: $("problem-dismiss"),
  };
  // The fields that hold the holder's data: emptied (not just hidden) whenever the verdict goes away.
  const PERSONAL_FIELDS = [
    ui.verdictWord,
    ui.verdictAction,
    ui.verdictReason,
    ui.holderName,
    ui.holderNameLatin,
    ui.holderDob,
    ui.testType,
    ui.sampleTime,
    ui.validUntil,
    ui.certificateId,
  ];

  const state = {
    credential: sessionStorage.getItem(CREDENTIAL_KEY),
    language: sessionStorage.getItem(LANGUAGE_KEY) === "en" ? "en" : "vi",
    view: "signin", // signin | scan | verdict | problem
    busy: false, // a request is in flight
    shownText: null, // the QR text whose verdict is on screen
    recentText: null, // the last verdict's QR text: not verified again while the camera still sees it
    recentSeenAt: 0,
    stream: null,
    scanTimer: 0,
    reader: null, // the promise of zxing-wasm's module
  };
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });

  const t = (key) => TEXTS[state.language][key];

  // --- language ---------------------------------------------------------------------------------------

  function applyLanguage() {
    document.documentElement.lang = state.language;
    document.title = t("title");
    for (const element of document.querySelectorAll("[data-i18n]")) {
      element.textContent = t(element.dataset.i18n);
    }
    ui.langToggle.textContent = t("otherLanguageShort");
    ui.langToggle.title = t("otherLanguage");
    ui.langToggle.setAttribute("aria-label", t("otherLanguage"));
    ui.langToggle.lang = state.language === "vi" ? "en" : "vi";
  }

  function switchLanguage() {
    state.language = state.language === "vi" ? "en" : "vi";
    sessionStorage.setItem(LANGUAGE_KEY, state.language);
    applyLanguage();
    if (state.view === "scan") setStatus(t("pointCamera"));
    // The verdict's reason comes from the server in the language asked for: ask again in the new one.
    if (state.view === "verdict" && state.shownText && !state.busy) verify(state.shownText);
  }

  // --- views ------------------------------------------------------------------------------------------

  function show(view) {
    state.view = view;
    ui.signinScreen.hidden = view !== "signin";
    ui.scanScreen.hidden = view === "signin";
    ui.verdict.hidden = view !== "verdict";
    ui.problem.hidden = view !== "problem";
    ui.signOut.hidden = view === "signin";
    if (view === "scan") scheduleScan();
  }

  function setStatus(text) {
    ui.scanStatus.textContent = text;
  }

  function clearVerdict() {
    for (const field of PERSONAL_FIELDS) field.textContent = "";
    ui.verdict.dataset.verdict = "";
    ui.verdict.dataset.tone = "";
    ui.verdict.dataset.acceptWithWarning = "";
    state.shownText = null;
  }

  function showVerdict(text, answer) {
    clearVerdict();
    const verdict = answer.verdict;
    const words = t("verdicts");
    const tone = verdict === "VERDICT_VALID" ? "valid" : verdict === "VERDICT_STATUS_UNKNOWN" ? "unknown" : "invalid";
    const warn = verdict === "VERDICT_STATUS_UNKNOWN" && answer.acceptWithWarning === true;
    ui.verdict.dataset.verdict = verdict;
    ui.verdict.dataset.tone = tone;
    ui.verdict.dataset.acceptWithWarning = String(warn);
    ui.verdictWord.textContent = words[verdict] || words.other;
    ui.verdictAction.textContent = tone === "valid" ? t("accept") : warn ? t("acceptWithWarning") : t("refuse");
    ui.verdictReason.textContent = answer.reason || "";
    ui.holderName.textContent = [answer.familyName, answer.givenName].filter(Boolean).join(" ");
    ui.holderNameLatin.textContent = [answer.familyNameTransliterated, answer.givenNameTransliterated]
      .filter(Boolean)
      .join(" ")
      .replaceAll("<", " ")
      .trim();
    ui.holderDob.textContent = formatDateOfBirth(answer.dateOfBirth || "");
    const test = !answer.entryType || answer.entryType === "ENTRY_TYPE_TEST";
    ui.testType.previousElementSibling.textContent = t(test ? "testType" : "entryType");
    ui.testType.textContent = test
      ? answer.testType
        ? t("testTypes")[answer.testType] || t("testTypes").other
        : ""
      : t("entryTypes")[answer.entryType] || "";
    ui.sampleTime.textContent = formatTime(answer.sampleCollectedAt);
    ui.validUntil.textContent = formatTime(answer.validUntil);
    ui.certificateId.textContent = answer.certificateId || "";
    const facts = [ui.holderName, ui.holderDob, ui.testType, ui.sampleTime, ui.validUntil, ui.certificateId];
    for (const field of facts) field.parentElement.hidden = field.textContent === "";
    // Nothing to compare when the code did not decode that far (MALFORMED, UNKNOWN_ISSUER, ...).
    ui.facts.hidden = facts.every((field) => field.textContent === "");
    ui.compareHint.hidden = ui.holderName.textContent === "" && ui.holderDob.textContent === "";
    state.shownText = text;
    show("verdict");
    ui.scanNext.focus({ preventScroll: true });
  }

  function showProblem(message) {
    clearVerdict();
    ui.problemMessage.textContent = message;
    show("problem");
    ui.problemDismiss.focus({ preventScroll: true });
  }

  function backToScanning() {
    if (state.shownText) {
      state.recentText = state.shownText;
      state.recentSeenAt = performance.now();
    }
    clearVerdict();
    ui.problemMessage.textContent = "";
    setStatus(state.stream ? t("pointCamera") : ui.scanStatus.textContent);
    show("scan");
  }

  // --- formatting -------------------------------------------------------------------------------------

  function formatDateOfBirth(value) {
    // As on Vietnamese ID cards: dd/mm/yyyy (or mm/yyyy, yyyy for a partial date).
    const match = /^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$/.exec(value);
    if (!match) return value;
    return [match[3], match[2], match[1]].filter(Boolean).join("/");
  }

  function formatTime(value) {
    if (!value) return "";
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return value;
    return new Intl.DateTimeFormat(state.language === "vi" ? "vi-VN" : "en-GB", {
      day: "2-digit",
      month: "2-digit",
      year: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    }).format(date);
  }

  // --- talking to the gateway -------------------------------------------------------------------------

  async function call(path, token, body) {
    const headers = { Authorization: `Bearer ${token}`, "Accept-Language": state.language, Accept: "application/json" };
    const init = { method: body === undefined ? "GET" : "POST", headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let json = null;
    try {
      json = await response.json();
    } catch {
      json = null;
    }
    return { status: response.status, ok: response.ok, json };
  }

  // The text a person reads for a failed call: the server's LocalizedMessage when it sent one.
  function errorText(status, json) {
    const details = json && Array.isArray(json.details) ? json.details : [];
    const localized = details.find((d) => d && String(d["@type"]).endsWith("google.rpc.LocalizedMessage"));
    if (localized && localized.message) return localized.message;
    if (status === 401) return t("credentialRejected");
    if (status === 403) return t("notAllowed");
    if (status === 429) return t("tooMany");
    if (status >= 500) return t("serverError");
    return `${t("requestFailed")} (HTTP ${status})`;
  }

  async function signIn(token) {
    ui.signinError.textContent = "";
    if (!token) {
      ui.signinError.textContent = t("tokenMissing");
      return;
    }
    ui.signinButton.disabled = true;
    ui.signinError.textContent = t("signingIn");
    try {
      const answer = await call("/v1/rules", token);
      if (!answer.ok) {
        ui.signinError.textContent = errorText(answer.status, answer.json);
        return;
      }
      state.credential = token;
      sessionStorage.setItem(CREDENTIAL_KEY, token);
      ui.tokenInput.value = "";
      ui.signinError.textContent = "";
      enterScanning();
    } catch {
      ui.signinError.textContent = t("networkError");
    } finally {
      ui.signinButton.disabled = false;
    }
  }

  function signOut(message) {
    state.credential = null;
    sessionStorage.removeItem(CREDENTIAL_KEY);
    stopCamera();
    clearVerdict();
    state.recentText = null;
    ui.manualInput.value = "";
    ui.manual.open = false;
    ui.problemMessage.textContent = "";
    ui.signinError.textContent = message || "";
    show("signin");
    ui.tokenInput.focus();
  }

  async function verify(text) {
    if (state.busy || !state.credential) return;
    state.busy = true;
    if (state.view === "scan") setStatus(t("checking"));
    try {
      const answer = await call("/v1/verify", state.credential, { qr: text });
      if (answer.status === 401) {
        signOut(`${errorText(answer.status, answer.json)} ${t("signInAgain")}`);
      } else if (!answer.ok) {
        showProblem(errorText(answer.status, answer.json));
      } else if (!answer.json || typeof answer.json.verdict !== "string") {
        showProblem(t("badAnswer"));
      } else {
        showVerdict(text, answer.json);
      }
    } catch {
      showProblem(t("networkError"));
    } finally {
      state.busy = false;
      if (state.view === "scan") {
        setStatus(state.stream ? t("pointCamera") : "");
        scheduleScan();
      }
    }
  }

  // --- camera and QR reading --------------------------------------------------------------------------

  function prepareReader() {
    if (state.reader) return state.reader;
    const zxing = window.ZXingWASM;
    if (!zxing) {
      state.reader = Promise.reject(new Error("zxing-wasm did not load"));
    } else {
      // Our own copy of the .wasm: zxing-wasm would otherwise fetch it from a CDN.
      const locateFile = (path, prefix) => (path.endsWith(".wasm") ? WASM_URL : prefix + path);
      state.reader = Promise.resolve(zxing.prepareZXingModule({ overrides: { locateFile }, fireImmediately: true }));
    }
    state.reader.catch(() => setStatus(t("readerUnavailable")));
    return state.reader;
  }

  async function startCamera() {
    if (state.stream || document.hidden) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      setStatus(t("cameraUnavailable"));
      ui.manual.open = true;
      return;
    }
    setStatus(t("startingCamera"));
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 720 } },
        audio: false,
      });
    } catch (error) {
      setStatus(error && error.name === "NotAllowedError" ? t("cameraDenied") : t("cameraUnavailable"));
      ui.manual.open = true;
      return;
    }
    if (!state.credential || state.stream) {
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    state.stream = stream;
    ui.video.srcObject = stream;
    ui.video.play().catch(() => {});
    if (state.view === "scan") setStatus(t("pointCamera"));
    scheduleScan();
  }

  function stopCamera() {
    clearTimeout(state.scanTimer);
    if (state.stream) for (const track of state.stream.getTracks()) track.stop();
    state.stream = null;
    ui.video.srcObject = null;
  }

  function scheduleScan() {
    clearTimeout(state.scanTimer);
    if (state.stream) state.scanTimer = setTimeout(scanOnce, SCAN_INTERVAL_MS);
  }

  // The officer typing a code by hand: the camera waits, so a code in view does not interrupt.
  const typing = () => document.activeElement === ui.manualInput || ui.manualInput.value !== "";

  async function scanOnce() {
    if (state.view !== "scan" || state.busy || !state.stream) return; // resumed by show("scan") / verify()
    let text = null;
    if (!typing()) {
      try {
        text = await decodeFrame();
      } catch {
        text = null;
      }
    }
    const now = performance.now();
    if (text !== null && text === state.recentText) {
      state.recentSeenAt = now;
      setStatus(t("alreadyShown"));
    } else if (text !== null && state.view === "scan" && !state.busy) {
      state.recentText = null;
      verify(text);
      return;
    } else if (state.recentText !== null && now - state.recentSeenAt > GONE_AFTER_MS) {
      state.recentText = null;
      if (state.view === "scan") setStatus(t("pointCamera"));
    }
    scheduleScan();
  }

  async function decodeFrame() {
    const video = ui.video;
    if (video.readyState < 2 || !video.videoWidth) return null;
    await prepareReader();
    const scale = Math.min(1, MAX_FRAME_SIDE / Math.max(video.videoWidth, video.videoHeight));
    const width = Math.round(video.videoWidth * scale);
    const height = Math.round(video.videoHeight * scale);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    context.drawImage(video, 0, 0, width, height);
    const image = context.getImageData(0, 0, width, height);
    context.clearRect(0, 0, width, height);
    const results = await window.ZXingWASM.readBarcodes(image, READER_OPTIONS);
    const hit = results.find((result) => result.isValid && result.text);
    return hit ? hit.text : null;
  }

  function enterScanning() {
    clearVerdict();
    show("scan");
    prepareReader();
    startCamera();
  }

  // --- wiring -----------------------------------------------------------------------------------------

  ui.langToggle.addEventListener("click", switchLanguage);
  ui.signOut.addEventListener("click", () => signOut(""));
  ui.signinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(ui.tokenInput.value.trim());
  });
  ui.manualSubmit.addEventListener("click", () => {
    const text = ui.manualInput.value.trim();
    if (!text) {
      ui.manualInput.focus();
      return;
    }
    ui.manualInput.value = "";
    ui.manualInput.blur();
    verify(text);
  });
  ui.scanNext.addEventListener("click", backToScanning);
  ui.problemDismiss.addEventListener("click", backToScanning);
  document.addEventListener("visibilitychange", () => {
    // No camera while the page is not shown; back on when it is.
    if (document.hidden) stopCamera();
    else if (state.credential) startCamera();
  });

  applyLanguage();
  if (state.credential) enterScanning();
  else show("signin");
})();
