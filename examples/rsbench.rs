use makuo::proto::repair::Code;
use std::time::Instant;
fn main() {
    for (k, p) in [(128u32, 128u16), (128, 64), (128, 32), (64, 64), (256, 64)] {
        let code = Code {
            block: 1436,
            k,
            parity: p,
        };
        let src: Vec<Vec<u8>> = (0..k).map(|i| vec![i as u8; 1436]).collect();
        let t = Instant::now();
        for _ in 0..50 {
            code.encode(&src, 0..2).unwrap();
        }
        let e = t.elapsed() / 50;
        let par = code.encode(&src, 0..4).unwrap();
        let present: Vec<(usize, &[u8])> =
            (4..k as usize).map(|i| (i, src[i].as_slice())).collect();
        let parity: Vec<(usize, &[u8])> = par
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.as_slice()))
            .collect();
        let t = Instant::now();
        for _ in 0..50 {
            code.decode(k as usize, &present, &parity).unwrap();
        }
        println!(
            "k={k} p={p}: encode {e:?} decode {:?} per group",
            t.elapsed() / 50
        );
    }
}
