//! What attribution adds to an answer: a 10-sentence answer over 5 retrieved passages
//! (Chinese and English), streamed in 8-character pieces as a model streams, from
//! `Attributor::new` (the passages' terms) to `finish`. Prints p50/p99 per answer; the
//! target is under 20 ms on 2 cores.
//!
//! `cargo bench -p lore --bench attribution` (LORE_BENCH_ANSWERS sets the answer count).

use std::time::Instant;

use lore_core::answer::{Attributor, Unsupported};
use lore_core::embed::bm25::Bm25Encoder;

/// Five passages of about 150 characters each, as retrieval hands them to the model.
const PASSAGES_ZH: [&str; 5] = [
    "支持向量机的基本思想是在样本空间中找到一个划分超平面，使得两类样本之间的间隔最大。间隔最大化可以形式化为一个凸二次规划问题，\
其对偶问题可以用序列最小最优化算法高效求解。只有支持向量决定最终的划分超平面。",
    "软间隔允许某些样本不满足约束条件，在最大化间隔的同时使不满足约束的样本尽可能少。常用的替代损失函数有合页损失、指数损失和对率损失，\
正则化常数C控制间隔大小与训练误差之间的折中。",
    "核函数把样本从原始空间映射到一个更高维的特征空间，使得样本在这个特征空间内线性可分。常用的核函数包括线性核、多项式核、\
高斯核、拉普拉斯核和Sigmoid核，核函数的选择是支持向量机的最大变数。",
    "贝叶斯决策论在所有相关概率都已知的理想情形下，考虑如何基于这些概率和误判损失来选择最优的类别标记。朴素贝叶斯分类器采用了\
属性条件独立性假设，对已知类别，假设所有属性相互独立。",
    "集成学习通过构建并结合多个学习器来完成学习任务。Boosting是一族可将弱学习器提升为强学习器的算法，Bagging则基于自助采样法，\
随机森林在以决策树为基学习器构建Bagging集成的基础上，进一步在决策树的训练过程中引入了随机属性选择。",
];

const ANSWER_ZH: &str = "支持向量机的基本思想是找到一个划分超平面，使两类样本之间的间隔最大[1]。\
间隔最大化是一个凸二次规划问题，可以用序列最小最优化算法求解[1]。\
软间隔允许某些样本不满足约束条件[2]。\
正则化常数C控制间隔大小与训练误差之间的折中[3]。\
核函数把样本映射到更高维的特征空间，使样本线性可分[3]。\
常用的核函数包括线性核、多项式核和高斯核。\
朴素贝叶斯分类器假设所有属性相互独立[4]。\
Boosting可以把弱学习器提升为强学习器[5]。\
随机森林在决策树的训练中引入了随机属性选择[5]。\
支持向量机在二十世纪九十年代被发明于月球上[1]。";

const PASSAGES_EN: [&str; 5] = [
    "Prompts should give clear and specific instructions. Use delimiters such as triple quotes or XML tags to mark \
the distinct parts of the input, so the model cannot mistake the text it works on for instructions.",
    "Ask for structured output, for example JSON or HTML, so the answer can be parsed by a program. Check whether \
the conditions of the task are satisfied before doing it, and say what to do when they are not.",
    "Few-shot prompting gives the model successful examples of the task before asking it to perform the task, \
which shows the style and format expected without long explanations.",
    "Give the model time to think: specify the steps required to complete a task, and ask it to work out its own \
solution before judging a student's solution, instead of rushing to a conclusion.",
    "Models hallucinate: they make statements that sound plausible but are not true. Asking the model to first find \
relevant quotes from the text and then answer using those quotes reduces hallucinations.",
];

const ANSWER_EN: &str = "Prompts should give clear and specific instructions [1]. \
Delimiters such as triple quotes mark the distinct parts of the input [1]. \
Ask for structured output like JSON so a program can parse the answer [3]. \
Check whether the conditions of the task are satisfied first [2]. \
Few-shot prompting shows the model successful examples of the task [3]. \
Specify the steps required to complete a task [4]. \
Ask the model to work out its own solution before judging another one [4]. \
Models hallucinate plausible statements that are not true [5]. \
Finding relevant quotes first reduces hallucinations [5]. \
Prompt engineering was invented by the ancient Romans in 1850 [2].";

/// Attributes one answer streamed in pieces of `piece` characters; returns what it printed.
fn attribute(bm25: &Bm25Encoder, passages: &[&str], answer: &str, piece: usize) -> String {
    let mut attributor = Attributor::new(bm25, passages, 0.6, Unsupported::Mark);
    let chars: Vec<char> = answer.chars().collect();
    let mut out = String::new();
    for part in chars.chunks(piece) {
        out.push_str(&attributor.push(&part.iter().collect::<String>()));
    }
    out.push_str(&attributor.finish());
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let answers: usize = std::env::var("LORE_BENCH_ANSWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let bm25 = Bm25Encoder::new();
    let cases: [(&str, &[&str], &str); 2] = [
        ("zh", &PASSAGES_ZH, ANSWER_ZH),
        ("en", &PASSAGES_EN, ANSWER_EN),
    ];
    for (language, passages, answer) in cases {
        // The invented last sentence must be marked, or the bench measures the wrong work.
        let shown = attribute(&bm25, passages, answer, 8);
        assert!(
            shown.contains(lore_core::answer::NOT_FOUND_MARK),
            "{language}: the unsupported sentence was not marked:\n{shown}"
        );
        let mut times: Vec<f64> = (0..answers)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(attribute(&bm25, passages, answer, 8));
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "attribution {language}: 10 sentences, 5 passages, streamed in 8-character pieces: \
             p50 {:.3} ms, p99 {:.3} ms over {answers} answers",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
}
