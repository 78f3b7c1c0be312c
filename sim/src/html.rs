//! Self-contained HTML reports, one per run and one per campaign: a single file with the data
//! inlined as JSON and a small script that draws it (no network, no external assets), so it can
//! be attached to a CI run or mailed as is.
//!
//! The page draws whatever the report carries: fields it does not know (added by later parts of
//! the simulator) appear in a generic section, `sometimes` maps as a coverage table, and any
//! object with `buckets` as a histogram. Script errors are collected into the page itself
//! (`#script-errors`, `body[data-rendered]`) so a headless browser test can see them.
use crate::campaign::CampaignReport;
use crate::report::RunReport;
use crate::timeline::Timeline;
use serde_json::json;

const TEMPLATE: &str = include_str!("html/template.html");
const PLACEHOLDER: &str = "/*__SPARKSIM_DATA__*/";

/// The page for one run; `timeline` is the bounded event record, if the run kept one.
pub fn run_page(report: &RunReport, timeline: Option<&Timeline>) -> String {
    page(&json!({ "kind": "run", "report": report, "timeline": timeline }))
}

/// The page for a campaign (or a merge of campaign shards).
pub fn campaign_page(campaign: &CampaignReport) -> String {
    page(&json!({ "kind": "campaign", "campaign": campaign }))
}

fn page(data: &serde_json::Value) -> String {
    TEMPLATE.replace(PLACEHOLDER, &script_safe_json(data))
}

/// JSON that cannot end the `<script>` element it sits in: `</` becomes `<\/` (the same string
/// to a JSON parser) and `<!--` cannot open a comment.
fn script_safe_json(data: &serde_json::Value) -> String {
    data.to_string().replace("</", "<\\/").replace("<!--", "<\\u0021--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_the_script_element() {
        let s = script_safe_json(&json!({ "m": "</script><script>alert(1)</script><!--" }));
        assert!(!s.contains("</script"), "{s}");
        assert!(!s.contains("<!--"), "{s}");
        let back: serde_json::Value = serde_json::from_str(&s).expect("still JSON");
        assert_eq!(back["m"], "</script><script>alert(1)</script><!--");
    }

    #[test]
    fn the_template_has_exactly_one_data_slot() {
        assert_eq!(TEMPLATE.matches(PLACEHOLDER).count(), 1);
    }
}
