//! Refresh rotation under proptest: any interleaving of uses of one
//! family's tokens (old and new, one at a time or several at once, inside
//! and outside the retry window) leaves at most one live token. While no
//! use was refused, exactly one is live, the newest; once one was refused
//! (reuse), none is.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tessera_issuer::tokens::refresh_token_hash;

use super::*;

#[derive(Debug, Clone)]
enum Step {
    /// Present the family's n-th token (modulo how many it has), `copies`
    /// times at once.
    Use {
        which: prop::sample::Index,
        copies: usize,
    },
    /// Let time pass (the retry window is 10 s).
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), 1usize..=3).prop_map(|(which, copies)| Step::Use { which, copies }),
        1 => (0u64..25).prop_map(Step::Wait),
    ]
}

/// One refresh through the router, on a task of its own.
fn spawn_refresh(state: &AppState, token: &str) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let state = state.clone();
    let form = format!("grant_type=refresh_token&refresh_token={token}");
    tokio::spawn(async move {
        let request = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        let reply = oneshot::send(router(state), request).await;
        (reply.status, reply.body)
    })
}

/// The family's tokens that would still rotate: stored, unused, session live.
async fn live(app: &App, tokens: &[String]) -> Vec<usize> {
    let mut live = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let found = app
            .db
            .find_refresh(&refresh_token_hash(token))
            .await
            .unwrap();
        if found.is_some_and(|f| !f.used && !f.revoked) {
            live.push(i);
        }
    }
    live
}

async fn family(app: &App, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut tokens = vec![refresh_of(&app.login().await)];
    let mut refused = false;
    for (n, step) in steps.into_iter().enumerate() {
        match step {
            Step::Use { which, copies } => {
                let token = tokens[which.index(tokens.len())].clone();
                let tasks: Vec<_> = (0..copies)
                    .map(|_| spawn_refresh(&app.state, &token))
                    .collect();
                for task in tasks {
                    let (status, body) = task.await.unwrap();
                    match status {
                        StatusCode::OK => {
                            let new = refresh_of(&body);
                            if !tokens.contains(&new) {
                                tokens.push(new);
                            }
                        }
                        StatusCode::BAD_REQUEST => {
                            prop_assert_eq!(&body, &json!({"error": "invalid_grant"}));
                            refused = true;
                        }
                        other => prop_assert!(false, "step {}: {} {}", n, other, body),
                    }
                }
            }
            Step::Wait(secs) => app.clock.advance(secs),
        }
        let live = live(app, &tokens).await;
        prop_assert!(
            live.len() <= 1,
            "step {}: live tokens {:?} of {}",
            n,
            live,
            tokens.len()
        );
        if refused {
            prop_assert!(live.is_empty(), "step {}: a reuse left {:?} live", n, live);
        } else {
            prop_assert_eq!(&live, &vec![tokens.len() - 1], "step {}: not the newest", n);
        }
    }
    Ok(())
}

#[test]
fn any_interleaving_of_a_familys_uses_leaves_at_most_one_live_token() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // One issuer for every case; each case is a fresh login (a new family).
    let app = rt.block_on(app());
    let mut runner = TestRunner::new(Config {
        cases: 32,
        max_shrink_iters: 128,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(step(), 1..14), |steps| {
            rt.block_on(family(&app, steps))
        })
        .unwrap();
}
