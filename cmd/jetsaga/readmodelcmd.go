package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jetsaga/jetsaga/readmodel"
)

// readmodelCmd runs `jetsaga readmodel rebuild`: it asks the read model to
// rebuild itself from the streams (POST /admin/rebuild) and prints the
// progress it streams back, then the report.
func readmodelCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "rebuild" {
		return errors.New("usage: jetsaga readmodel rebuild [--readmodel-url URL] [--force]")
	}
	fs := flag.NewFlagSet("readmodel rebuild", flag.ContinueOnError)
	var ep endpoints
	ep.flags(fs, "readmodel-url")
	force := fs.Bool("force", false, "rebuild even if a stream no longer holds its history from sequence 1 (views of older orders would be partial)")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	tokenFile := adminTokenFlag(fs)
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	url := strings.TrimSuffix(ep.readmodelURL, "/") + "/admin/rebuild"
	if *force {
		url += "?force=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	token, err := readAdminToken(*tokenFile)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("rebuild: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	start := time.Now()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Progress *readmodel.RebuildProgress `json:"progress"`
			Report   *readmodel.RebuildReport   `json:"report"`
			Error    string                     `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("rebuild: unreadable line %q: %w", sc.Text(), err)
		}
		switch {
		case line.Error != "":
			return fmt.Errorf("rebuild failed: %s", line.Error)
		case line.Progress != nil:
			p := line.Progress
			if !*jsonOut {
				target := ""
				if p.Target > 0 {
					target = fmt.Sprintf(" (up to seq %d)", p.Target)
				}
				fmt.Printf("%6.1fs  %-8s %-9s %7d events%s\n", time.Since(start).Seconds(), p.Phase, p.Stream, p.Events, target)
			}
		case line.Report != nil:
			return printRebuild(*line.Report, *jsonOut)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	return errors.New("rebuild: the read model ended the stream without a report")
}

func printRebuild(r readmodel.RebuildReport, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Println("rebuilt the read model from the streams:")
	for _, s := range r.Streams {
		skipped := ""
		if s.Skipped > 0 {
			skipped = fmt.Sprintf(", %d skipped (no valid event)", s.Skipped)
		}
		fmt.Printf("  %-9s seq %d..%d: %d events replayed%s\n", s.Stream, s.FirstSeq, s.LastSeq, s.Events, skipped)
	}
	fmt.Printf("  %d events, %d views in %.2fs (%.0f events/s); consumers held for the switch %.1f ms\n",
		r.Events, r.Views, r.TookMS/1000, float64(r.Events)/max(r.TookMS/1000, 0.001), r.SwitchMS)
	return nil
}
