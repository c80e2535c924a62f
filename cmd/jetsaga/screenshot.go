package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jetsaga/jetsaga/internal/browser"
	"github.com/jetsaga/jetsaga/stack"
)

// screenshot runs the demo's orders through a fresh stack at a rate that
// rises and falls, and takes pictures of the read model's dashboard with
// headless Chromium: the overview and one declined saga's page (make
// screenshot writes the README's).
func screenshot(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("screenshot", flag.ContinueOnError)
	out := fs.String("out", "docs/dashboard.png", "the overview's picture (PNG)")
	sagaOut := fs.String("saga-out", "docs/dashboard-saga.png", "a declined saga's page (PNG); empty: none")
	duration := fs.Duration("duration", 90*time.Second, "how long orders are placed")
	rate := fs.Float64("rate", 25, "orders placed per second on average (the rate swings ±60% around it)")
	width := fs.Int("width", 1440, "browser window width, CSS pixels")
	height := fs.Int("height", 900, "browser window height, CSS pixels")
	if err := parse(fs, args); err != nil {
		return err
	}
	chrome, err := browser.Find()
	if err != nil {
		return err
	}
	c, err := demoStack("screenshot")
	if err != nil {
		return err
	}
	log := cliLogger()
	began := time.Now()
	step := func(format string, a ...any) {
		fmt.Printf("[%6.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, a...))
	}
	step("fresh stack in %s", c.RunDir)
	if err := os.RemoveAll(c.RunDir); err != nil {
		return err
	}
	if err := stack.Up(ctx, c, log); err != nil {
		_ = stack.Down(context.WithoutCancel(ctx), c, log)
		return fmt.Errorf("start the stack: %w", err)
	}
	defer func() {
		step("tearing the stack down")
		if derr := stack.Down(context.WithoutCancel(ctx), c, log); derr != nil && err == nil {
			err = derr
		}
	}()

	bctx, closeBrowser, err := browser.Start(ctx, browser.Config{Path: chrome, Width: *width, Height: *height})
	if err != nil {
		return err
	}
	defer closeBrowser()
	page := c.URL("readmodel") + "/"
	if err := chromedp.Do(bctx, chromedp.Navigate(page)); err != nil {
		return fmt.Errorf("open %s: %w", page, err)
	}

	// The overview is taken while the orders still flow: the placer goes on
	// for a while after the picture.
	step("placing the demo's orders for %s at about %.0f/s", *duration, *rate)
	client := &http.Client{Timeout: 10 * time.Second}
	type placed struct {
		ids []string
		err error
	}
	done := make(chan placed, 1)
	go func() {
		ids, err := placePaced(ctx, client, c.URL("order"), *duration+5*time.Second, *rate)
		done <- placed{ids, err}
	}()
	timer := time.NewTimer(*duration)
	select {
	case <-ctx.Done():
		timer.Stop()
	case <-timer.C:
	}
	shotErr := capture(bctx, *out, "")
	p := <-done
	if err := cmp.Or(p.err, shotErr); err != nil {
		return err
	}
	step("wrote %s", *out)
	ids := p.ids
	step("placed %d orders; waiting for every saga to end", len(ids))
	for _, id := range ids {
		if _, err := waitTerminal(ctx, client, c.URL("readmodel"), id, 2*time.Minute); err != nil {
			return err
		}
	}

	if *sagaOut != "" {
		id := ids[0]
		for i, o := range ids {
			if i%10 == 7 { // declined by payment: the longest saga (demoOrder)
				id = o
				break
			}
		}
		if err := chromedp.Do(bctx,
			chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = '#/orders/%s'`, id)),
			waitJS(`document.querySelector('#saga').dataset.status === 'CANCELLED'`),
		); err != nil {
			return fmt.Errorf("open saga %s: %w", id, err)
		}
		if err := capture(bctx, *sagaOut, "#saga"); err != nil {
			return err
		}
		step("wrote %s (order %s)", *sagaOut, id)
	}
	return nil
}

// waitJS waits for a JavaScript predicate to hold in the page.
func waitJS(predicate string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](predicate, chromedp.WithPollingTimeout(time.Minute),
			chromedp.WithPollingInterval(100*time.Millisecond))(ctx, t)
		return chromedp.Void{}, err
	}
}

// capture writes the whole page, or the element of a CSS selector, as a PNG.
func capture(ctx context.Context, path, selector string) error {
	shot := chromedp.FullScreenshot(100)
	if selector != "" {
		shot = chromedp.Screenshot(chromedp.CSS(selector))
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// placePaced places demoOrder(0), demoOrder(1), … for d, at a rate that
// swings ±60% around rate per second (a period of a minute), so the charts
// have a shape. It returns the ids in placing order.
func placePaced(ctx context.Context, hc *http.Client, orderURL string, d time.Duration, rate float64) ([]string, error) {
	if rate <= 0 {
		return nil, errors.New("--rate must be > 0")
	}
	var (
		mu   sync.Mutex
		ids  []string
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 32)
	)
	start := time.Now()
	due := start
	for i := 0; time.Since(start) < d && ctx.Err() == nil; i++ {
		phase := 2 * math.Pi * due.Sub(start).Seconds() / 60
		r := rate * (1 + 0.6*math.Sin(phase-math.Pi/2))
		due = due.Add(time.Duration(float64(time.Second) / max(r, rate/10)))
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		sem <- struct{}{}
		mu.Lock()
		ids = append(ids, "")
		slot := len(ids) - 1
		mu.Unlock()
		wg.Go(func() {
			defer func() { <-sem }()
			id, err := placeOrder(ctx, hc, orderURL, demoOrder(i), fmt.Sprintf("shot-%d", i))
			mu.Lock()
			defer mu.Unlock()
			ids[slot] = id
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ids, ctx.Err()
}
