// Package browser finds a Chromium on the machine and runs it headless under
// chromedp, for the dashboard's browser test and for make screenshot.
// Debian's package is chromium (.ci/run installs it); JETSAGA_CHROMIUM names
// another binary.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/chromedp/chromedp"
)

// EnvChromium names the Chromium binary to use instead of the one found on
// the PATH.
const EnvChromium = "JETSAGA_CHROMIUM"

// candidates are the names Chromium goes by on the PATH, most likely first.
var candidates = []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome", "headless-shell"}

// ErrNotFound says no Chromium was found.
var ErrNotFound = errors.New("no Chromium found: install Debian's chromium package (apt-get install chromium), as .ci/run does, or set " + EnvChromium)

// Find returns the path of the Chromium binary: $JETSAGA_CHROMIUM if set,
// else the first of chromium, chromium-browser, google-chrome… on the PATH.
func Find() (string, error) {
	if p := os.Getenv(EnvChromium); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("%s=%q: %w", EnvChromium, p, err)
		}
		return path, nil
	}
	for _, name := range candidates {
		if path, err := exec.LookPath(name); err == nil {
			return path, nil
		}
	}
	return "", ErrNotFound
}

// Config says how to start the browser.
type Config struct {
	Path          string // the binary (Find)
	Width, Height int    // the window, in CSS pixels; default 1440×900
	// Logf, when set, receives chromedp's log and error lines.
	Logf func(format string, args ...any)
}

// Start runs a headless Chromium and returns a chromedp context on a new
// tab; cancel closes the browser and waits for it to exit.
func Start(ctx context.Context, c Config) (context.Context, context.CancelFunc, error) {
	if c.Path == "" {
		return nil, nil, errors.New("browser: no binary given")
	}
	w, h := c.Width, c.Height
	if w == 0 || h == 0 {
		w, h = 1440, 900
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(c.Path),
		chromedp.WindowSize(w, h),
		chromedp.NoSandbox, // as root (CI) Chromium refuses to start sandboxed
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	var copts []chromedp.ContextOption
	if c.Logf != nil {
		copts = append(copts, chromedp.WithLogf(c.Logf), chromedp.WithErrorf(c.Logf))
	}
	bctx, cancelTab := chromedp.NewContext(actx, copts...)
	// Start the browser now, so that a binary that cannot run fails here.
	if err := chromedp.Do(bctx); err != nil {
		cancelTab()
		cancelAlloc()
		return nil, nil, fmt.Errorf("start %s: %w", c.Path, err)
	}
	return bctx, func() { cancelTab(); cancelAlloc() }, nil
}
