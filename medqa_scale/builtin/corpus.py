"""Built-in synthetic Chinese medical QA corpus: the embedded default's data and pre-training text.

Every pair is decoded from an index into a fixed table of conditions, people, durations and
phrasings, so the corpus is deterministic from a seed, has a known number of distinct pairs
(`space_size()`), and answers follow from questions: a model that learns the table answers well.
The text is synthetic and marked as such; it is not medical advice.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

SYNTHETIC_MARK = "（合成示例数据，不构成医疗建议。）"


@dataclass(frozen=True)
class Condition:
    name: str
    symptoms: tuple[str, ...]
    department: str
    advice: str
    drug_caution: str
    red_flag: str


CONDITIONS: tuple[Condition, ...] = (
    Condition("普通感冒", ("鼻塞", "流清涕", "咽喉痛", "打喷嚏"), "呼吸内科", "多休息、多饮温水，保持室内通风", "复方感冒药不要叠加服用，以免对乙酰氨基酚过量", "高热超过三天或呼吸困难"),
    Condition("流行性感冒", ("高热", "全身肌肉酸痛", "乏力", "干咳"), "呼吸内科", "居家隔离休息，注意补充水分", "抗病毒药物宜在发病四十八小时内使用，儿童禁用阿司匹林", "持续高热或意识模糊"),
    Condition("急性支气管炎", ("咳嗽", "咳黄痰", "胸闷", "低热"), "呼吸内科", "戒烟并避免吸入冷空气和粉尘", "抗生素只在明确细菌感染时使用，不要自行服用", "咳血或气促加重"),
    Condition("社区获得性肺炎", ("寒战", "咳铁锈色痰", "胸痛", "呼吸急促"), "呼吸内科", "卧床休息，保证营养和液体摄入", "需按医嘱足疗程使用抗生素，不可症状好转就停药", "口唇发紫或血氧下降"),
    Condition("支气管哮喘", ("反复喘息", "夜间咳嗽", "呼气困难", "胸部紧缩感"), "呼吸内科", "远离过敏原，随身携带缓解药物", "吸入激素需长期规律使用，用后漱口", "说话断续或缓解药物无效"),
    Condition("过敏性鼻炎", ("阵发性喷嚏", "鼻痒", "大量清水样鼻涕", "眼痒"), "耳鼻喉科", "减少接触花粉和尘螨，勤洗床品", "部分抗组胺药有嗜睡作用，服药后避免驾车", "鼻出血不止或单侧鼻塞加重"),
    Condition("急性扁桃体炎", ("吞咽疼痛", "扁桃体红肿", "发热", "颌下淋巴结肿大"), "耳鼻喉科", "进食温凉流质，注意口腔清洁", "青霉素类药物使用前需确认有无过敏史", "张口困难或颈部明显肿胀"),
    Condition("中耳炎", ("耳痛", "听力下降", "耳闷", "耳道流脓"), "耳鼻喉科", "洗澡时防止耳朵进水，避免用力擤鼻", "不要自行往耳内滴药，鼓膜穿孔时部分滴耳液禁用", "耳后红肿或剧烈头痛"),
    Condition("胃食管反流病", ("反酸", "烧心", "胸骨后灼痛", "嗳气"), "消化内科", "少食多餐，睡前三小时不进食，抬高床头", "质子泵抑制剂宜在餐前服用，长期使用需复查", "吞咽困难或黑便"),
    Condition("慢性胃炎", ("上腹隐痛", "饱胀感", "食欲减退", "恶心"), "消化内科", "规律饮食，少吃辛辣和生冷食物", "非甾体抗炎药会刺激胃黏膜，需在医生指导下使用", "呕血或体重明显下降"),
    Condition("消化性溃疡", ("规律性上腹痛", "饥饿时疼痛", "夜间痛醒", "反酸"), "消化内科", "戒烟限酒，按时进餐", "根除幽门螺杆菌需按疗程联合用药", "呕血或柏油样便"),
    Condition("急性胃肠炎", ("腹泻", "呕吐", "腹部绞痛", "低热"), "消化内科", "少量多次补充口服补液盐，饮食清淡", "止泻药不宜在发热或便中带血时使用", "尿量明显减少或精神萎靡"),
    Condition("肠易激综合征", ("腹痛伴排便习惯改变", "腹胀", "便秘与腹泻交替", "排便后腹痛缓解"), "消化内科", "记录饮食日记，减少产气食物，保持情绪稳定", "解痉药需按需短期使用", "便血或夜间腹泻"),
    Condition("胆囊结石", ("右上腹痛", "油腻饮食后腹痛", "右肩背部放射痛", "腹胀"), "肝胆外科", "低脂饮食，规律进食早餐", "溶石药物疗效有限，需评估后使用", "发热伴黄疸或剧烈腹痛"),
    Condition("急性阑尾炎", ("转移性右下腹痛", "恶心", "发热", "右下腹压痛"), "普外科", "尽快就医评估，在确诊前禁食禁水", "确诊前不要自行服用止痛药，以免掩盖病情", "腹痛扩散至全腹"),
    Condition("高血压", ("头晕", "后颈部发紧", "头痛", "耳鸣"), "心血管内科", "低盐饮食，控制体重，规律测量血压", "降压药需每天按时服用，不能自行停药", "血压超过一百八十或出现胸痛"),
    Condition("冠心病", ("活动后胸闷", "心前区压榨感", "左肩放射痛", "气短"), "心血管内科", "戒烟，适量有氧运动，控制血脂", "硝酸甘油需舌下含服并避光保存", "胸痛持续超过十五分钟"),
    Condition("心律失常", ("心悸", "心跳不规则", "头晕", "乏力"), "心血管内科", "避免浓茶和咖啡，保证睡眠", "抗心律失常药需定期复查心电图", "晕厥或持续心悸"),
    Condition("2型糖尿病", ("多饮", "多尿", "体重下降", "视物模糊"), "内分泌科", "控制总热量，规律运动，监测血糖", "二甲双胍宜随餐服用，使用胰岛素要防低血糖", "出现意识改变或呼吸有烂苹果味"),
    Condition("甲状腺功能亢进症", ("怕热多汗", "心慌", "手抖", "易饿消瘦"), "内分泌科", "避免高碘饮食，注意休息", "抗甲状腺药物需定期复查血常规和肝功能", "高热伴烦躁或心率极快"),
    Condition("甲状腺功能减退症", ("怕冷", "乏力嗜睡", "体重增加", "皮肤干燥"), "内分泌科", "注意保暖，均衡饮食", "左甲状腺素宜早晨空腹服用", "嗜睡加重或体温明显偏低"),
    Condition("痛风", ("第一跖趾关节红肿", "夜间关节剧痛", "关节发热", "关节活动受限"), "风湿免疫科", "少吃动物内脏和海鲜，多饮水，戒酒", "急性期不宜开始降尿酸治疗", "多关节同时发作或伴高热"),
    Condition("类风湿关节炎", ("晨僵", "双手小关节肿痛", "关节对称受累", "乏力"), "风湿免疫科", "适度关节功能锻炼，注意保暖", "免疫抑制剂需定期监测血象和肝功能", "关节畸形迅速进展"),
    Condition("腰椎间盘突出症", ("腰痛", "下肢放射痛", "腿麻", "久坐后加重"), "骨科", "避免久坐和弯腰搬重物，加强腰背肌锻炼", "止痛药不宜长期大量使用", "大小便失禁或下肢无力"),
    Condition("颈椎病", ("颈肩酸痛", "手臂麻木", "头晕", "颈部活动受限"), "骨科", "调整坐姿，避免长时间低头", "肌肉松弛药可能引起嗜睡", "走路不稳或双手无力"),
    Condition("骨质疏松症", ("腰背疼痛", "身高变矮", "驼背", "轻微外伤后骨折"), "骨科", "补充钙和维生素D，多晒太阳，防跌倒", "双膦酸盐需空腹服用并保持直立半小时", "突发剧烈背痛"),
    Condition("偏头痛", ("单侧搏动性头痛", "畏光", "恶心", "头痛前视觉闪光"), "神经内科", "规律作息，记录并避免诱因", "止痛药每月使用不宜超过十天，以免药物过度使用性头痛", "突发最剧烈头痛或伴肢体无力"),
    Condition("失眠症", ("入睡困难", "早醒", "多梦易醒", "白天困倦"), "神经内科", "固定起床时间，睡前避免使用电子产品", "镇静催眠药不宜长期使用，停药需逐渐减量", "伴有持续情绪低落"),
    Condition("缺铁性贫血", ("面色苍白", "头晕乏力", "活动后心悸", "指甲变脆"), "血液科", "多吃红肉和动物肝脏，查找失血原因", "铁剂与浓茶同服会影响吸收，宜饭后服用", "黑便或极度乏力"),
    Condition("尿路感染", ("尿频", "尿急", "尿痛", "下腹坠胀"), "泌尿外科", "多饮水，勤排尿，注意会阴清洁", "抗生素需用满疗程，孕期用药需医生选择", "腰痛伴高热"),
    Condition("肾结石", ("腰部绞痛", "血尿", "疼痛向会阴部放射", "恶心呕吐"), "泌尿外科", "每天饮水两千毫升以上，少喝浓茶", "解痉止痛药需在医生指导下使用", "发热寒战或无尿"),
    Condition("湿疹", ("皮肤瘙痒", "红斑丘疹", "皮肤渗出", "皮肤干燥脱屑"), "皮肤科", "避免搔抓和热水烫洗，坚持保湿", "外用激素需按部位选择强度，不宜长期大面积使用", "皮损化脓或大面积渗液"),
    Condition("荨麻疹", ("风团", "剧烈瘙痒", "皮疹时起时消", "皮肤划痕后隆起"), "皮肤科", "避免已知过敏原，穿宽松衣物", "抗组胺药可能引起嗜睡", "伴呼吸困难或喉头发紧"),
    Condition("带状疱疹", ("单侧带状分布水疱", "皮肤烧灼痛", "局部刺痛", "低热"), "皮肤科", "保持疱疹处清洁干燥，避免抓破", "抗病毒药宜在起疹七十二小时内开始", "疱疹累及眼部"),
    Condition("结膜炎", ("眼红", "眼部分泌物增多", "异物感", "流泪"), "眼科", "勤洗手，毛巾单独使用", "含激素眼药水需遵医嘱使用", "视力下降或剧烈眼痛"),
    Condition("干眼症", ("眼干涩", "视疲劳", "眼部烧灼感", "畏光"), "眼科", "减少连续用眼时间，注意眨眼", "人工泪液宜选不含防腐剂的", "视力明显下降"),
    Condition("龋齿", ("牙齿遇冷酸痛", "牙齿有黑洞", "咀嚼痛", "食物嵌塞"), "口腔科", "早晚刷牙，使用牙线，少吃甜食", "止痛药只能暂时缓解，需尽早补牙", "面部肿胀或发热"),
    Condition("焦虑症", ("过度担心", "坐立不安", "心慌出汗", "难以放松"), "精神心理科", "规律运动，学习放松训练", "抗焦虑药需按医嘱使用，不可突然停药", "出现自伤念头"),
    Condition("抑郁症", ("情绪持续低落", "兴趣减退", "睡眠障碍", "精力下降"), "精神心理科", "保持规律作息，与家人保持沟通", "抗抑郁药起效需要两到四周，不可自行停药", "出现轻生念头"),
    Condition("缺钙性手足抽搐", ("手足抽搐", "口周麻木", "肌肉痉挛", "手指刺痛"), "内分泌科", "补充钙质，适量晒太阳", "钙剂与部分抗生素需间隔服用", "喉部痉挛或呼吸困难"),
)


@dataclass(frozen=True)
class Person:
    who: str  # how the asker names the patient
    note: str  # what the answer adds for this kind of patient


PEOPLE: tuple[Person, ...] = (
    Person("我", "成年人按说明书常规剂量用药即可"),
    Person("我爸爸", "老年人多病共存，用药前应核对正在服用的其他药物"),
    Person("我妈妈", "老年人多病共存，用药前应核对正在服用的其他药物"),
    Person("我家孩子", "儿童用药需按体重计算剂量，不能直接服用成人药"),
    Person("我怀孕的妻子", "孕期用药须先咨询产科医生"),
    Person("我爷爷", "高龄老人肝肾功能减退，剂量需医生调整"),
    Person("我同事", "成年人按说明书常规剂量用药即可"),
    Person("我哺乳期的姐姐", "哺乳期用药需确认药物是否进入乳汁"),
)

DURATIONS: tuple[str, ...] = ("两天", "三天", "一周", "两周", "一个月", "半年")

# Question phrasings by intent. {who} {dur} {cond} {s1} {s2} are filled from the table.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "diagnose": (
        "{who}{s1}、{s2}已经{dur}了，可能是什么病？",
        "{who}最近{dur}总是{s1}，还有点{s2}，这是怎么回事？",
        "医生你好，{who}出现{s1}和{s2}有{dur}了，是什么问题？",
        "{who}{s1}伴{s2}，持续{dur}，需要担心吗？",
        "请问{s1}加上{s2}是什么病？{who}这样{dur}了。",
        "{who}这{dur}一直{s1}，今天又{s2}，该怎么办？",
    ),
    "department": (
        "{who}确诊{cond}{dur}了，应该挂哪个科？",
        "{who}怀疑得了{cond}，有{dur}了，去医院看哪个科？",
        "{cond}看什么科室？{who}不舒服{dur}了。",
        "请问{cond}挂号挂哪个科？{who}已经{dur}了。",
        "{who}得{cond}{dur}了，去医院该找哪个科的医生？",
        "{who}可能是{cond}，拖了{dur}，应该去哪个科？",
    ),
    "advice": (
        "{who}得了{cond}{dur}了，平时要注意什么？",
        "{cond}患者日常生活中需要注意哪些？{who}已经{dur}了。",
        "{who}被诊断为{cond}有{dur}了，生活上怎么调理？",
        "请问{cond}在家怎么护理？{who}这样{dur}了。",
        "{who}患{cond}{dur}，饮食起居有什么讲究？",
        "{who}的{cond}{dur}了还没好，平常该注意些什么？",
    ),
    "medication": (
        "{who}得了{cond}{dur}了，用药要注意什么？",
        "{cond}吃药有什么禁忌？{who}已经{dur}了。",
        "{who}患{cond}{dur}，吃药方面需要注意哪些？",
        "请问{cond}用药有哪些注意事项？{who}病了{dur}了。",
        "{who}确诊{cond}{dur}了，药该怎么吃才安全？",
        "{who}的{cond}{dur}了，自己买药吃要当心什么？",
    ),
    "symptoms": (
        "{cond}有哪些症状？{who}怀疑自己得了，已经{dur}了。",
        "{who}担心是{cond}，有{dur}了，它的典型表现是什么？",
        "请问{cond}一般会有什么表现？{who}不舒服{dur}了。",
        "怎么判断是不是{cond}？{who}这样{dur}了。",
        "{cond}的常见症状有哪些？{who}难受{dur}了。",
        "{who}可能得了{cond}，{dur}了，会出现哪些症状？",
    ),
    "urgent": (
        "{who}得了{cond}{dur}了，什么情况下必须马上去医院？",
        "{cond}出现哪些情况要立刻就医？{who}已经{dur}了。",
        "{who}患{cond}{dur}，哪些信号说明病情加重了？",
        "请问{cond}什么时候需要看急诊？{who}病了{dur}了。",
        "{who}的{cond}{dur}了，哪些表现不能再拖？",
        "{cond}有哪些危险信号？{who}这样{dur}了。",
    ),
}
INTENTS: tuple[str, ...] = tuple(QUESTIONS)
SYMPTOM_PAIRS: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(4) for j in range(4) if i != j)


def _answer(intent: str, c: Condition, p: Person, dur: str, s1: str, s2: str) -> str:
    if intent == "diagnose":
        body = (f"{s1}和{s2}持续{dur}，较常见的原因是{c.name}，它还常伴有{c.symptoms[2]}等表现。"
                f"建议到{c.department}就诊明确诊断。{p.note}。")
    elif intent == "department":
        body = f"{c.name}建议到{c.department}就诊。已经{dur}了，宜尽早就医。{p.note}。"
    elif intent == "advice":
        body = f"{c.name}患者平时应{c.advice}。病程已有{dur}，请按时复诊。{p.note}。"
    elif intent == "medication":
        body = f"{c.name}用药时要注意：{c.drug_caution}。{p.note}。"
    elif intent == "symptoms":
        body = f"{c.name}的常见症状有{'、'.join(c.symptoms)}。如已{dur}，建议到{c.department}就诊。"
    else:
        body = f"{c.name}如出现{c.red_flag}，应立即就医。平时应{c.advice}。{p.note}。"
    return body + SYNTHETIC_MARK


_PER_INTENT = len(CONDITIONS) * len(PEOPLE) * len(DURATIONS) * 6  # 6 phrasings per intent


def space_size() -> int:
    """Number of distinct question-answer pairs the generator can produce."""
    # Only the diagnose intent varies with the symptom pair; the others have one variant each.
    return _PER_INTENT * (len(SYMPTOM_PAIRS) + len(INTENTS) - 1)


def _pair_at(index: int) -> tuple[str, str, str]:
    """Decode a flat index into (intent, question, answer); indices enumerate distinct pairs."""
    n_diag = _PER_INTENT * len(SYMPTOM_PAIRS)
    if index < n_diag:
        intent, rest = "diagnose", index
    else:
        k, rest = divmod(index - n_diag, _PER_INTENT)
        intent = INTENTS[1 + k]
    rest, phr = divmod(rest, 6)
    rest, d = divmod(rest, len(DURATIONS))
    rest, pi = divmod(rest, len(PEOPLE))
    rest, ci = divmod(rest, len(CONDITIONS))
    i, j = SYMPTOM_PAIRS[rest] if intent == "diagnose" else (0, 1)
    c, p, dur = CONDITIONS[ci], PEOPLE[pi], DURATIONS[d]
    s1, s2 = c.symptoms[i], c.symptoms[j]
    question = QUESTIONS[intent][phr].format(who=p.who, dur=dur, cond=c.name, s1=s1, s2=s2)
    return intent, question, _answer(intent, c, p, dur, s1, s2)


def generate_pairs(n: int, seed: int) -> list[dict]:
    """`n` distinct records {id, question, answer, intent, group}, sampled without replacement.

    Several phrasings of a question share one answer; `group` names the answer, so that the
    split can hold out whole groups and no test answer reappears in training.
    """
    total = space_size()
    if n > total:
        raise ValueError(f"the built-in generator has {total} distinct pairs; {n} were asked for")
    indices = random.Random(seed).sample(range(total), n)
    records = []
    for k, index in enumerate(indices):
        intent, question, answer = _pair_at(index)
        group = "g" + hashlib.sha1(answer.encode("utf-8")).hexdigest()[:12]
        records.append({"id": f"synth-{k:06d}", "question": question, "answer": answer, "intent": intent, "group": group})
    return records


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    continent: str


# General knowledge the built-in base model learns in pre-training and the medical QA data never
# mentions: what the retention benchmark asks, to see what fine-tuning makes the model forget.
COUNTRIES: tuple[Country, ...] = (
    Country("中国", "北京", "亚洲"), Country("日本", "东京", "亚洲"), Country("韩国", "首尔", "亚洲"),
    Country("印度", "新德里", "亚洲"), Country("泰国", "曼谷", "亚洲"), Country("越南", "河内", "亚洲"),
    Country("蒙古", "乌兰巴托", "亚洲"), Country("伊朗", "德黑兰", "亚洲"), Country("法国", "巴黎", "欧洲"),
    Country("英国", "伦敦", "欧洲"), Country("德国", "柏林", "欧洲"), Country("意大利", "罗马", "欧洲"),
    Country("西班牙", "马德里", "欧洲"), Country("俄罗斯", "莫斯科", "欧洲"), Country("希腊", "雅典", "欧洲"),
    Country("挪威", "奥斯陆", "欧洲"), Country("埃及", "开罗", "非洲"), Country("肯尼亚", "内罗毕", "非洲"),
    Country("尼日利亚", "阿布贾", "非洲"), Country("埃塞俄比亚", "亚的斯亚贝巴", "非洲"), Country("摩洛哥", "拉巴特", "非洲"),
    Country("巴西", "巴西利亚", "南美洲"), Country("阿根廷", "布宜诺斯艾利斯", "南美洲"), Country("智利", "圣地亚哥", "南美洲"),
    Country("秘鲁", "利马", "南美洲"), Country("美国", "华盛顿", "北美洲"), Country("加拿大", "渥太华", "北美洲"),
    Country("墨西哥", "墨西哥城", "北美洲"), Country("古巴", "哈瓦那", "北美洲"), Country("澳大利亚", "堪培拉", "大洋洲"),
    Country("新西兰", "惠灵顿", "大洋洲"), Country("斐济", "苏瓦", "大洋洲"),
)
COUNTRY_PROMPTS = ("请介绍一下{country}。", "{country}是个怎样的国家？", "讲讲{country}的基本情况。")


def general_dialogues(n: int, seed: int) -> list[list[dict]]:
    """Chats of general knowledge (each country's capital and continent), for pre-training only."""
    rng = random.Random(seed)
    dialogues = []
    for _ in range(n):
        c = rng.choice(COUNTRIES)
        sentences = [f"{c.name}的首都是{c.capital}。", f"{c.name}位于{c.continent}。", f"{c.capital}是{c.name}的首都。"]
        rng.shuffle(sentences)
        dialogues.append([{"role": "user", "content": rng.choice(COUNTRY_PROMPTS).format(country=c.name)},
                          {"role": "assistant", "content": "".join(sentences)}])
    return dialogues


TOPIC_PROMPTS = ("请介绍一下{cond}。", "{cond}是什么病？", "讲讲{cond}的基本知识。", "关于{cond}，你知道些什么？")


def pretraining_dialogues(n: int, seed: int) -> list[list[dict]]:
    """Chats in which the assistant gives an encyclopaedia-style passage about a condition.

    They teach the built-in base model the chat format and the medical facts, as instruction
    tuning taught Qwen2.5-Instruct, but not this corpus's question-answer patterns: those are
    what fine-tuning has to learn.
    """
    rng = random.Random(seed)
    dialogues = []
    for _ in range(n):
        c = rng.choice(CONDITIONS)
        symptoms = list(c.symptoms)
        rng.shuffle(symptoms)
        sentences = [
            f"{c.name}的常见症状有{'、'.join(symptoms)}。",
            f"{c.name}一般在{c.department}诊治。",
            f"{c.name}患者平时应{c.advice}。",
            f"{c.name}用药时要注意：{c.drug_caution}。",
            f"如出现{c.red_flag}，应立即就医。",
            f"{rng.choice(PEOPLE).note}。",
        ]
        rng.shuffle(sentences)
        messages = [{"role": "user", "content": rng.choice(TOPIC_PROMPTS).format(cond=c.name)},
                    {"role": "assistant", "content": "".join(sentences)}]
        if rng.random() < 0.5:
            messages.insert(0, {"role": "system", "content": "你是一个乐于助人的助手。"})
        dialogues.append(messages)
    return dialogues


def tokenizer_text() -> list[str]:
    """Text to learn the built-in tokenizer's vocabulary from: the corpus's building blocks (the
    table's entries, and the question and answer templates with their slots empty), never a
    whole record, so the tokenizer has seen no dev or test question or answer."""
    blank = Condition("", ("", "", "", ""), "", "", "", "")
    texts = [t for c in CONDITIONS for t in (c.name, *c.symptoms, c.department, c.advice, c.drug_caution, c.red_flag)]
    texts += [t for p in PEOPLE for t in (p.who, p.note)] + list(DURATIONS) + [SYNTHETIC_MARK]
    texts += [re.sub(r"\{\w+\}", " ", q) for phrasings in QUESTIONS.values() for q in phrasings]
    texts += [_answer(intent, blank, Person("", ""), "", "", "") for intent in INTENTS]
    return texts
