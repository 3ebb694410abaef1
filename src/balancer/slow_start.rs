//! Slow start (`servers[].slow_start`): a server that comes (back) up
//! ramps its effective weight from ~0 to full over the configured time
//! (HAProxy's `slowstart`, Envoy's `slow_start_config`).
//!
//! The ramp is applied the same way in every algorithm, outside it: a
//! ramping server found by the algorithm is *admitted* with probability
//! [`factor`]; a refused one is skipped like an excluded server, so the
//! walk moves on to the algorithm's next candidate (the next in the smooth
//! rotation, the next point of the hash ring, the other of two choices, the
//! next least-loaded leaf). Its share of requests is thus about
//! `factor × its normal share`, in round robin, least connections, hashing,
//! least response time, P2C and random alike. HAProxy changes the server's
//! `eweight` in each algorithm's tree; Envoy ramps only round robin and
//! least request.
//!
//! The admission draw is random per request, except for `ip_hash` and
//! `hash`, where it is the request key's hash mixed with the server: a key
//! admitted at factor `f` is admitted at every larger factor, so keys move
//! to the recovering server once and stay (the ring stays consistent).
//!
//! Everything here is a pure function of times and draws; the caller reads
//! the clock ([`crate::clock::now_ms`], tokio's clock, so paused-time tests
//! drive it).

/// The smallest factor of a ramp that has started (HAProxy's effective
/// weight is at least 1 of its 256 steps; 1% here).
pub const MIN_FACTOR: f64 = 0.01;

/// The ramp factor `elapsed / ramp`, at least [`MIN_FACTOR`], 1.0 once
/// `elapsed_ms ≥ ramp_ms` (a linear ramp, HAProxy's and Envoy's default
/// aggression 1). Times in milliseconds.
pub fn factor(elapsed_ms: u64, ramp_ms: u64) -> f64 {
    if ramp_ms == 0 || elapsed_ms >= ramp_ms {
        return 1.0;
    }
    (elapsed_ms as f64 / ramp_ms as f64).max(MIN_FACTOR)
}

/// True when a server at ramp `factor` takes a request whose draw for it is
/// `draw` (uniform over `u64`): `draw / 2^64 < factor`.
#[inline]
pub fn admits(draw: u64, factor: f64) -> bool {
    if factor >= 1.0 {
        return true;
    }
    ((draw >> 11) as f64) < factor * (1u64 << 53) as f64
}

/// The draw of request draw `seed` for server index `i`: one uniform value
/// per (request, server), so two ramping servers are admitted independently.
#[inline]
pub fn draw_for(seed: u64, i: usize) -> u64 {
    let mut x = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_is_linear_from_the_floor_to_full() {
        assert_eq!(factor(0, 30_000), MIN_FACTOR);
        assert!((factor(3_000, 30_000) - 0.1).abs() < 1e-9);
        assert!((factor(15_000, 30_000) - 0.5).abs() < 1e-9);
        assert_eq!(factor(30_000, 30_000), 1.0);
        assert_eq!(factor(90_000, 30_000), 1.0);
        assert_eq!(factor(5, 0), 1.0);
    }

    #[test]
    fn admitted_share_follows_the_factor() {
        for f in [0.01, 0.1, 0.5, 0.9] {
            let n = 100_000;
            let admitted = (0..n).filter(|&k| admits(draw_for(k, 3), f)).count();
            let share = admitted as f64 / n as f64;
            assert!((share - f).abs() < 0.01, "factor {f}: share {share}");
        }
        assert!(admits(u64::MAX, 1.0));
        assert!(!admits(u64::MAX, 0.999));
    }

    #[test]
    fn a_key_admitted_once_stays_admitted_as_the_ramp_grows() {
        for seed in 0..10_000u64 {
            let d = draw_for(seed, 1);
            let mut was = false;
            for step in 0..=100u64 {
                let now = admits(d, factor(step * 300, 30_000));
                assert!(!was || now, "seed {seed} dropped at step {step}");
                was = now;
            }
            assert!(was);
        }
    }

    /// The ramp driven by tokio's clock (paused): what the group sees.
    #[tokio::test(start_paused = true)]
    async fn ramp_follows_paused_time() {
        let ramp = std::time::Duration::from_secs(30);
        let up = crate::clock::now_ms();
        let at = |now: u64| factor(now - up, ramp.as_millis() as u64);
        assert_eq!(at(crate::clock::now_ms()), MIN_FACTOR);
        tokio::time::advance(std::time::Duration::from_secs(6)).await;
        assert!((at(crate::clock::now_ms()) - 0.2).abs() < 0.001);
        tokio::time::advance(std::time::Duration::from_secs(24)).await;
        assert_eq!(at(crate::clock::now_ms()), 1.0);
    }
}
