fn main() {
    let path = std::env::args().nth(1).expect("scenario");
    let s = sparksim::scenario::Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let r = sparksim::runner::run(&s, &path, 1, &Default::default());
    println!("{}", serde_json::to_string_pretty(&r.report).unwrap());
}
