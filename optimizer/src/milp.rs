//! A small solver-neutral MILP representation, solved with good_lp (microlp by default, HiGHS
//! with the `highs` feature). Keeping our own copy of the model lets tests evaluate any
//! assignment against exactly what the solver saw.

use good_lp::{Expression, ProblemVariables, ResolutionError, Solution, SolverModel, Variable, WithTimeLimit};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Continuous,
    Integer,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Le,
    Ge,
    Eq,
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub terms: Vec<(usize, f64)>,
    pub op: Op,
    pub rhs: f64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Milp {
    pub kind: Vec<Kind>,
    pub lb: Vec<f64>,
    pub ub: Vec<f64>,
    pub obj: Vec<f64>,
    pub rows: Vec<Row>,
}

/// Seconds the solver may take before returning its best feasible answer.
pub(crate) const TIME_LIMIT_S: f64 = 30.0;

#[derive(Debug)]
pub(crate) enum SolveError {
    Infeasible,
    Other(String),
}

impl Milp {
    pub(crate) fn var(&mut self, kind: Kind, lb: f64, ub: f64, cost: f64) -> usize {
        self.kind.push(kind);
        self.lb.push(lb);
        self.ub.push(ub);
        self.obj.push(cost);
        self.kind.len() - 1
    }

    pub(crate) fn binary(&mut self, cost: f64) -> usize {
        self.var(Kind::Integer, 0.0, 1.0, cost)
    }

    pub(crate) fn row(&mut self, terms: Vec<(usize, f64)>, op: Op, rhs: f64) {
        self.rows.push(Row { terms, op, rhs });
    }

    pub(crate) fn len(&self) -> usize {
        self.kind.len()
    }

    fn expr(vars: &[Variable], terms: &[(usize, f64)]) -> Expression {
        let mut e = Expression::from(0.0);
        for (i, c) in terms {
            e.add_mul(*c, vars[*i]);
        }
        e
    }

    /// Name of the solver this build uses.
    pub(crate) fn solver_name() -> &'static str {
        if cfg!(feature = "highs") {
            "highs"
        } else {
            "microlp"
        }
    }

    pub(crate) fn solve(&self) -> Result<Vec<f64>, SolveError> {
        let mut pv = ProblemVariables::new();
        let vars: Vec<Variable> = (0..self.len())
            .map(|i| {
                let mut d = good_lp::variable().min(self.lb[i]);
                if self.ub[i].is_finite() {
                    d = d.max(self.ub[i]);
                }
                if self.kind[i] == Kind::Integer {
                    d = d.integer();
                }
                pv.add(d)
            })
            .collect();
        let mut obj = Expression::from(0.0);
        for (i, c) in self.obj.iter().enumerate() {
            if *c != 0.0 {
                obj.add_mul(*c, vars[i]);
            }
        }
        let unsolved = pv.minimise(obj);
        let constraints = self.rows.iter().map(|r| {
            let e = Self::expr(&vars, &r.terms);
            match r.op {
                Op::Le => e.leq(r.rhs),
                Op::Ge => e.geq(r.rhs),
                Op::Eq => e.eq(r.rhs),
            }
        });
        let map_err = |e: ResolutionError| match e {
            ResolutionError::Infeasible => SolveError::Infeasible,
            other => SolveError::Other(other.to_string()),
        };
        #[cfg(feature = "highs")]
        let result = {
            let mut m = unsolved.using(good_lp::highs).with_time_limit(TIME_LIMIT_S);
            for c in constraints {
                m.add_constraint(c);
            }
            m.solve().map(|s| vars.iter().map(|v| s.value(*v)).collect::<Vec<f64>>())
        };
        #[cfg(not(feature = "highs"))]
        let result = {
            let mut m = unsolved.using(good_lp::microlp).with_time_limit(TIME_LIMIT_S);
            for c in constraints {
                m.add_constraint(c);
            }
            m.solve().map(|s| vars.iter().map(|v| s.value(*v)).collect::<Vec<f64>>())
        };
        result.map_err(map_err)
    }
}
