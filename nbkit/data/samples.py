"""Bundled sample tasks, generated offline and seeded, in the Nova RFT record format.

- `math`: arithmetic on small numbers and linear equations `a*x + b = c` with small integer solutions. This is
  what the demo trains a ~1M-parameter model on, on a CPU, so prompts and answers are short and learnable.
- `tools`: game-master tool calls in the style of AWS's StatRollAPI example (tool schemas in `tools`, the
  expected tool name and arguments in `reference_answer`).
- `chem`: hydrogen-bond donors and acceptors of molecules given as SMILES, computed with RDKit's Lipinski
  functions (needs the `chem` extra).

Each task draws distinct prompts from a finite pool and gives train and eval disjoint prompts, so the bundled
tasks never leak. Ids come from the content, so the same prompt has the same id under every seed.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Callable
from typing import Any

from nbkit.errors import UserError

Record = dict[str, Any]

MATH_SYSTEM = "Reply with the final answer only."
TOOLS_SYSTEM = "You are a helpful game master assistant. Answer by calling one of the tools."
CHEM_SYSTEM = "You are a helpful chemistry assistant"


def _record(rid: str, system: str, user: str, reference: Any, **extra: Any) -> Record:
    return {
        "id": rid,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "reference_answer": reference,
        **extra,
    }


def _content_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


# ---------------------------------------------------------------- math


def _arithmetic_pool() -> list[Record]:
    """+ and - on 1..20 (no negative results), * on 2..12: 731 distinct questions; easy = operands <= 10."""
    items = []
    for a in range(1, 21):
        for b in range(1, 21):
            items.append((a, "+", b, a + b))
            if b <= a:
                items.append((a, "-", b, a - b))
            if 2 <= a <= 12 and 2 <= b <= 12:
                items.append((a, "*", b, a * b))
    pool = []
    for a, op, b, result in items:
        level = "easy" if a <= 10 and b <= 10 else "medium"
        pool.append(_record(
            f"arith-{a}{op}{b}", MATH_SYSTEM, f"What is {a} {op} {b}?", {"solution": str(result)},
            domain="arithmetic", difficulty_level=level,
        ))
    return pool


def _algebra_pool() -> list[Record]:
    """a*x + b = c with a in 2..9, x in 0..12, b in -20..20: 4,264 distinct equations, integer solutions.

    Easy: no constant (ax = c), or a <= 5 with a small positive constant.
    """
    pool = []
    for a in range(2, 10):
        for x in range(0, 13):
            for b in range(-20, 21):
                c = a * x + b
                lhs = f"{a}x" if b == 0 else f"{a}x {'+' if b > 0 else '-'} {abs(b)}"
                level = "easy" if b == 0 or (a <= 5 and 0 <= b <= 10) else "medium"
                pool.append(_record(
                    f"alg-{a}x{b:+d}={c}", MATH_SYSTEM, f"Solve for x: {lhs} = {c}", {"solution": f"x = {x}"},
                    domain="algebra", difficulty_level=level,
                ))
    return pool


def _math_pools() -> list[list[Record]]:
    return [_arithmetic_pool(), _algebra_pool()]


# ---------------------------------------------------------------- tools

STAT_ROLL_TOOL = {
    "type": "function",
    "function": {
        "name": "StatRollAPI",
        "description": "Generates character stats by rolling 4d6, dropping the lowest die result, and applying a modifier.",
        "parameters": {
            "type": "object",
            "properties": {"modifier": {
                "description": "An integer representing the modifier to apply to the total of the stat roll.",
                "type": "integer",
            }},
            "required": ["modifier"],
        },
    },
}
DICE_ROLL_TOOL = {
    "type": "function",
    "function": {
        "name": "DiceRollAPI",
        "description": "Rolls a number of dice with the given number of sides and returns their total.",
        "parameters": {
            "type": "object",
            "properties": {
                "count": {"description": "How many dice to roll.", "type": "integer"},
                "sides": {"description": "Number of sides of each die (4, 6, 8, 10, 12 or 20).", "type": "integer"},
            },
            "required": ["count", "sides"],
        },
    },
}
INITIATIVE_TOOL = {
    "type": "function",
    "function": {
        "name": "InitiativeAPI",
        "description": "Rolls initiative: a d20 plus the dexterity modifier, rolled twice keeping the higher with advantage.",
        "parameters": {
            "type": "object",
            "properties": {
                "dexterity_modifier": {"description": "The character's dexterity modifier.", "type": "integer"},
                "advantage": {"description": "Whether the roll has advantage.", "type": "boolean"},
            },
            "required": ["dexterity_modifier", "advantage"],
        },
    },
}
GAME_TOOLS = [STAT_ROLL_TOOL, DICE_ROLL_TOOL, INITIATIVE_TOOL]

_CLASSES = ("warrior", "wizard", "rogue", "cleric", "ranger", "paladin", "bard", "druid", "monk", "sorcerer")
_STATS = ("strength", "dexterity", "constitution", "intelligence", "wisdom", "charisma")
_SOURCES = ("racial bonus", "magic item", "blessing", "curse")
_MONSTERS = ("goblin", "orc", "troll", "dragon", "skeleton", "ogre", "wolf", "giant spider")


def _signed(n: int) -> str:
    return f"+{n}" if n >= 0 else str(n)


def _tool_record(user: str, tool: str, args: dict[str, Any], level: str) -> Record:
    shown = ", ".join(f"{k}={v}" for k, v in args.items())
    reference = {"tool_called": tool, "tool_parameters": args, "expected_behavior": f"Call {tool} with {shown}"}
    record = _record(_content_id("tool", user), TOOLS_SYSTEM, user, reference, domain="tool_calling",
                     difficulty_level=level)
    record["tools"] = GAME_TOOLS
    return record


def _tools_pools() -> list[list[Record]]:
    stat = []
    for cls in _CLASSES:
        for stat_name in _STATS:
            for source in _SOURCES:
                for m in range(-3, 5):
                    if (source == "curse") == (m < 0) and m != 0:
                        user = f"Generate a {stat_name} stat for a {cls} character. Apply a {_signed(m)} {source} modifier."
                        stat.append(_tool_record(user, "StatRollAPI", {"modifier": m}, "easy"))
    dice = []
    for monster in _MONSTERS:
        for count in range(1, 7):
            for sides in (4, 6, 8, 10, 12, 20):
                user = f"Roll {count}d{sides} for the {monster}'s damage."
                dice.append(_tool_record(user, "DiceRollAPI", {"count": count, "sides": sides}, "medium"))
    initiative = []
    for cls in _CLASSES:
        for m in range(-2, 6):
            for adv in (False, True):
                tail = " It has advantage." if adv else ""
                user = f"Roll initiative for the {cls} with a dexterity modifier of {_signed(m)}.{tail}"
                args = {"dexterity_modifier": m, "advantage": adv}
                initiative.append(_tool_record(user, "InitiativeAPI", args, "medium"))
    return [stat, dice, initiative]


# ---------------------------------------------------------------- chem

# Well-known molecules; the pool adds disubstituted benzenes and pyridines built from common substituents.
NAMED_MOLECULES: dict[str, str] = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O", "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1", "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "naproxen": "COc1ccc2cc(ccc2c1)C(C)C(=O)O", "salicylic acid": "O=C(O)c1ccccc1O",
    "benzoic acid": "O=C(O)c1ccccc1", "phenol": "Oc1ccccc1", "aniline": "Nc1ccccc1", "pyridine": "c1ccncc1",
    "ethanol": "CCO", "acetic acid": "CC(=O)O", "glycine": "NCC(=O)O", "alanine": "CC(N)C(=O)O",
    "serine": "OCC(N)C(=O)O", "urea": "NC(N)=O", "glucose": "OCC1OC(O)C(O)C(O)C1O",
    "nicotine": "CN1CCCC1c1cccnc1", "dopamine": "NCCc1ccc(O)c(O)c1", "serotonin": "NCCc1c[nH]c2ccc(O)cc12",
    "adrenaline": "CNCC(O)c1ccc(O)c(O)c1", "histamine": "NCCc1cnc[nH]1", "metformin": "CN(C)C(=N)NC(N)=N",
    "lidocaine": "CCN(CC)CC(=O)Nc1c(C)cccc1C", "procaine": "CCN(CC)CCOC(=O)c1ccc(N)cc1",
    "benzocaine": "CCOC(=O)c1ccc(N)cc1", "theophylline": "Cn1c2nc[nH]c2c(=O)n(C)c1=O",
    "uracil": "O=c1cc[nH]c(=O)[nH]1", "thymine": "Cc1c[nH]c(=O)[nH]c1=O", "cytosine": "Nc1cc[nH]c(=O)n1",
    "adenine": "Nc1ncnc2[nH]cnc12", "guanine": "Nc1nc2[nH]cnc2c(=O)[nH]1",
    "sulfanilamide": "Nc1ccc(cc1)S(N)(=O)=O", "isoniazid": "NNC(=O)c1ccncc1",
    "phenylalanine": "NC(Cc1ccccc1)C(=O)O", "tyrosine": "NC(Cc1ccc(O)cc1)C(=O)O",
    "tryptophan": "NC(Cc1c[nH]c2ccccc12)C(=O)O", "vanillin": "COc1cc(C=O)ccc1O", "acetone": "CC(C)=O",
    "acetanilide": "CC(=O)Nc1ccccc1", "nitrobenzene": "O=[N+]([O-])c1ccccc1", "toluene": "Cc1ccccc1",
    "anisole": "COc1ccccc1", "benzamide": "NC(=O)c1ccccc1", "phenylacetic acid": "OC(=O)Cc1ccccc1",
    "mandelic acid": "OC(C(=O)O)c1ccccc1", "citric acid": "OC(=O)CC(O)(CC(=O)O)C(=O)O",
    "lactic acid": "CC(O)C(=O)O", "ethylene glycol": "OCCO", "glycerol": "OCC(O)CO", "diethylamine": "CCNCC",
    "morpholine": "C1COCCN1", "piperazine": "C1CNCCN1", "imidazole": "c1c[nH]cn1", "pyrrole": "c1cc[nH]c1",
    "indole": "c1ccc2[nH]ccc2c1", "quinoline": "c1ccc2ncccc2c1", "furfural": "O=Cc1ccco1", "thiophene": "c1ccsc1",
    "hydroquinone": "Oc1ccc(O)cc1", "resorcinol": "Oc1cccc(O)c1", "captopril": "CC(CS)C(=O)N1CCCC1C(=O)O",
    "atenolol": "CC(C)NCC(O)COc1ccc(CC(N)=O)cc1", "propranolol": "CC(C)NCC(O)COc1cccc2ccccc12",
    "diazepam": "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21", "fluoxetine": "CNCCC(Oc1ccc(cc1)C(F)(F)F)c1ccccc1",
    "amphetamine": "CC(N)Cc1ccccc1", "ephedrine": "CNC(C)C(O)c1ccccc1", "caffeic acid": "OC(=O)C=Cc1ccc(O)c(O)c1",
    "cinnamic acid": "OC(=O)C=Cc1ccccc1", "coumarin": "O=c1ccc2ccccc2o1", "allopurinol": "O=c1[nH]cnc2[nH]ncc12",
    "nicotinamide": "NC(=O)c1cccnc1", "pyrazinamide": "NC(=O)c1cnccn1", "hydroxyurea": "NC(=O)NO",
}
_SUBSTITUENTS = ("F", "Cl", "Br", "C", "CC", "O", "OC", "N", "NC", "N(C)C", "C(=O)O", "C(=O)OC", "C(=O)N",
                 "C(=O)C", "C#N", "[N+](=O)[O-]", "S(N)(=O)=O", "C(F)(F)F", "NC(C)=O", "CO")


def _chem_pools() -> list[list[Record]]:
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import Lipinski
    except ImportError:
        raise UserError("the chem task needs RDKit: pip install -e '.[chem]'") from None
    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]  # a C++ binding rdkit-stubs omits
    smiles = list(NAMED_MOLECULES.values())
    for i, a in enumerate(_SUBSTITUENTS):
        for b in _SUBSTITUENTS[i:]:
            smiles.append(f"c1cc({a})ccc1{b}")  # para-disubstituted benzene
        for b in _SUBSTITUENTS:
            smiles.append(f"c1nc({a})ccc1{b}")  # 2,5-disubstituted pyridine
    seen: set[str] = set()
    pool = []
    for raw in smiles:
        mol = Chem.MolFromSmiles(raw)
        if mol is None:
            raise RuntimeError(f"bundled SMILES {raw!r} does not parse; fix NAMED_MOLECULES or _SUBSTITUENTS")
        canonical = Chem.MolToSmiles(mol)
        if canonical in seen:
            continue
        seen.add(canonical)
        # rdkit-stubs omit NumHDonors/NumHAcceptors: Lipinski defines them at import time
        reference = {"donor_bond_counts": int(Lipinski.NumHDonors(mol)),  # type: ignore[attr-defined]
                     "acceptor_bond_counts": int(Lipinski.NumHAcceptors(mol))}  # type: ignore[attr-defined]
        level = "easy" if mol.GetNumHeavyAtoms() <= 12 else "medium"
        user = f"Predict hydrogen bond donors and acceptors for this SMILES: {canonical}"
        pool.append(_record(_content_id("chem", canonical), CHEM_SYSTEM, user, reference,
                            domain="chemistry", difficulty_level=level))
    return [pool]


# ---------------------------------------------------------------- tasks

TASKS: dict[str, tuple[Callable[[], list[list[Record]]], str]] = {
    "math": (_math_pools, "arithmetic (+, -, * on small numbers) and linear equations a*x + b = c"),
    "tools": (_tools_pools, "game-master tool calls (StatRollAPI, DiceRollAPI, InitiativeAPI)"),
    "chem": (_chem_pools, "hydrogen-bond donors and acceptors from SMILES (RDKit Lipinski)"),
}


def pool_size(name: str) -> int:
    """How many distinct prompts a task can produce (n_train + n_eval may not exceed it)."""
    return sum(len(p) for p in _pools(name))


def _pools(name: str) -> list[list[Record]]:
    if name not in TASKS:
        raise UserError(f"unknown sample task {name!r}; bundled tasks are: {', '.join(TASKS)}")
    return TASKS[name][0]()


def make_task(name: str, n_train: int = 400, n_eval: int = 200, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """(train, eval) records of a bundled task: distinct prompts, no prompt in both splits, seeded.

    Every sub-family of the task (arithmetic/algebra, each tool) gets an equal share of both splits, so the
    splits have the same mix.
    """
    if n_train < 1 or n_eval < 0:
        raise UserError(f"n_train must be >= 1 and n_eval >= 0, got n_train={n_train}, n_eval={n_eval}")
    pools = _pools(name)
    total = sum(len(p) for p in pools)
    if n_train + n_eval > total:
        raise UserError(
            f"task {name!r} has {total:,} distinct prompts; n_train + n_eval = {n_train + n_eval:,} is too many"
        )
    rng = random.Random(seed)
    for pool in pools:
        rng.shuffle(pool)
    # one copy per record: records of a pool share their tool lists, and callers may edit what they get
    train = [copy.deepcopy(r) for r in _take_balanced(pools, n_train)]
    eval_ = [copy.deepcopy(r) for r in _take_balanced(pools, n_eval)]
    rng.shuffle(train)
    rng.shuffle(eval_)
    return train, eval_


def _take_balanced(pools: list[list[Record]], n: int) -> list[Record]:
    """Take n records round-robin over the pools (removing them), so each family gets an equal share."""
    out: list[Record] = []
    while len(out) < n:
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop())
    return out
