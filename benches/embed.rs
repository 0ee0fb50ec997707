//! Embedding throughput of the local E5 model: 200-character Chinese chunks at 1 and 2
//! threads, sorted vs unsorted, batches in parallel vs one at a time (gemm threads only).
//! Run: `scripts/fetch-model.sh && cargo bench --bench embed` (LORE_E5_MODEL overrides the path;
//! LORE_BENCH_TEXTS and LORE_BENCH_BATCH_TOKENS change the workload and the batch budget).

use std::time::Instant;

use lore_core::embed::e5::{Batching, E5Model, Kind};

/// Varied Chinese prose; chunks are cut from it at different offsets.
const CORPUS: &str = "公司的年度预算编制工作从每年九月开始，各部门需要根据下一年度的业务计划提交预算申请。\
财务部会在十月中旬汇总各部门的申请，并与管理层讨论资源分配的优先级。预算一旦批准，各部门应严格按照计划执行，\
如需调整，必须提交书面说明并经过分管副总审批。新员工入职第一周需要完成信息安全培训，内容包括密码管理、\
钓鱼邮件识别以及客户数据的保护要求。所有员工的笔记本电脑必须开启磁盘加密，离开座位时应锁定屏幕。\
如果发现可疑的邮件或者系统异常，请立即通过内部工单系统联系技术支持团队，不要自行处理。\
我们的产品采用微服务架构，每个服务独立部署，通过消息队列进行异步通信。数据库按照业务领域拆分，\
订单服务使用关系型数据库保证事务一致性，搜索服务则使用倒排索引来支持全文检索。上线前必须通过自动化测试，\
包括单元测试、集成测试和性能测试，任何一项失败都不能发布。出差报销需要在返回后十五个工作日内提交，\
附上发票原件和行程单。住宿标准根据城市等级确定，一线城市每晚不超过六百元，其他城市不超过四百元。\
餐饮补贴按天计算，不需要提供发票。客户投诉应在二十四小时内响应，四十八小时内给出处理方案。\
客服人员需要记录投诉的时间、内容和处理过程，每周由质量管理部门进行抽查和分析，找出共性问题并推动改进。\
办公室的会议室可以通过日历系统预订，单次预订不超过两个小时，如需更长时间请联系行政部门。\
会议结束后请关闭投影仪和空调，保持桌面整洁。年终绩效评估包括自评、同事评价和主管评价三个部分，\
评估结果将作为调薪和晋升的重要依据。员工对评估结果有异议的，可以在结果公布后一周内提出申诉。";

fn chunks(n: usize, chars: usize) -> Vec<String> {
    let corpus: Vec<char> = CORPUS.chars().collect();
    (0..n)
        .map(|i| {
            let start = (i * 37) % corpus.len();
            corpus.iter().cycle().skip(start).take(chars).collect()
        })
        .collect()
}

/// User + system CPU seconds of this process so far (Linux, 100 ticks per second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn main() {
    let path = lore_core::embed::local::test_model_path();
    if !path.exists() {
        println!(
            "embed bench did not run: {} not found (run scripts/fetch-model.sh)",
            path.display()
        );
        return;
    }
    let rss_before = rss_mib();
    let t = Instant::now();
    let model = E5Model::load(&path).expect("model loads");
    println!(
        "loaded {} in {:.2}s; RSS {:.0} MiB (process before load: {:.0} MiB)",
        path.display(),
        t.elapsed().as_secs_f64(),
        rss_mib(),
        rss_before
    );

    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let n = env("LORE_BENCH_TEXTS").unwrap_or(96);
    let max_batch_tokens =
        env("LORE_BENCH_BATCH_TOKENS").unwrap_or(Batching::default().max_batch_tokens);
    let texts = chunks(n, 200);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens: usize = refs
        .iter()
        .map(|t| model.tokenize(t, Kind::Passage).len())
        .sum();
    println!(
        "{n} chunks of 200 Chinese characters, {:.1} tokens each on average",
        tokens as f64 / n as f64
    );

    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        // Warm-up: first-touch allocations and caches.
        pool.install(|| model.embed(&refs[..8.min(n)], Kind::Passage, &Batching::default()))
            .unwrap();
        for parallel_batches in [true, false] {
            for sort_by_length in [true, false] {
                let batching = Batching {
                    sort_by_length,
                    parallel_batches,
                    max_batch_tokens,
                };
                let (wall, cpu) = (Instant::now(), cpu_seconds());
                pool.install(|| model.embed(&refs, Kind::Passage, &batching))
                    .unwrap();
                let (secs, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
                println!(
                    "threads={threads} {:<16} {:<8} {:6.1} emb/s  ({:5.1} emb per CPU-second)",
                    if parallel_batches {
                        "parallel-batches"
                    } else {
                        "gemm-threads"
                    },
                    if sort_by_length { "sorted" } else { "unsorted" },
                    n as f64 / secs,
                    n as f64 / cpu.max(1e-9),
                );
            }
        }
    }
    println!("RSS at end: {:.0} MiB", rss_mib());
}
