// A stand-in of Jenkins' declarative pipeline DSL, owned by the tests: it evaluates the Jenkinsfile
// with a real Groovy interpreter and records the plan of one build: parameters, environment, each
// stage's `when` decision, the credentials bound and the exact `sh` commands with their environment.
// Directives and steps it does not know fail the evaluation (a misspelt `stepz` or `branchh`), as
// the declarative validator would.
//
//   groovy tests/jenkins/dsl.groovy JENKINSFILE BUILD.json PLAN.json
//
// BUILD.json: {"branch", "commit", "workspace", "params": {...}, "env": {...},
//              "credentials": {id: {variable: value}}, "run": false|true, "execute": [stage names],
//              "input": "proceed"|"abort", "stdout": {command: output}}
// With "run": true each `sh` really runs (bash -eu, in the workspace, with the recorded environment)
// and a failing one fails the build as on an agent: the next stages are skipped and `post` runs.
// "execute" limits that to the named stages ("post" for post blocks); the others are recorded only.
// A `sh(script: ..., returnStdout: true)` that is not run answers what "stdout" gives for its
// command, and fails the evaluation when it gives nothing. `withEnv` scopes are recorded on each
// step they wrap ("env").
import groovy.json.JsonOutput
import groovy.json.JsonSlurper

class DslError extends RuntimeException {
    DslError(String message) { super(message) }
}

class StepFailed extends RuntimeException {
    StepFailed(String message) { super(message) }
}

class Build {
    Map config
    Map params = [:]
    Map paramDefs = [:]
    Map env = [:]
    List stages = []
    Map post = [:]
    List options = []
    Map agent = [:]
    String result = 'SUCCESS'
    String error = null
    Map currentStage = null
    List bindings = []           // stack of credential scopes: [{variables}, ...]
    List boundCredentials = []   // the ids bound around the current step
    List envScopes = []          // stack of withEnv scopes: [{variable: value}, ...]
    Script script

    Build(Map config) {
        this.config = config
        env.BRANCH_NAME = config.branch
        env.WORKSPACE = config.workspace
        env.BUILD_TAG = "jenkins-mlship-${config.branch}-1".toString()
        (config.env ?: [:]).each { k, v -> env[k] = v }
    }

    void fail(String where, String what) { throw new DslError("${where}: ${what}".toString()) }

    Map stepEnv() {
        Map merged = [:]
        merged.putAll(params.collectEntries { k, v -> [(k): v.toString()] })  // parameters are env vars
        merged.putAll(env.collectEntries { k, v -> [(k): v == null ? '' : v.toString()] })
        bindings.each { merged.putAll(it) }
        return merged
    }

    List<Map> target() { currentStage == null ? post.current : currentStage.steps }

    void record(Map step) {
        if (!boundCredentials.isEmpty()) { step.credentials = boundCredentials.collect() }
        if (!envScopes.isEmpty()) {
            Map scoped = [:]
            envScopes.each { scoped.putAll(it) }
            step.env = scoped
        }
        target() << step
    }

    String recordedStdout(String cmd) {
        Map given = config.stdout ?: [:]
        if (!given.containsKey(cmd)) {
            fail(currentStage == null ? 'post' : "stage '${currentStage.name}'",
                 "sh returnStdout '${cmd}' is not run here and BUILD.json's \"stdout\" gives no output for it")
        }
        return given[cmd].toString()
    }

    String sh(Object arg) {
        String cmd = arg instanceof Map ? arg.script : arg.toString()
        boolean stdout = arg instanceof Map && arg.returnStdout
        Map stepEnvironment = stepEnv()
        Map step = [sh: cmd]
        if (stdout) { step.returnStdout = true }
        record(step)
        String stageName = currentStage == null ? 'post' : currentStage.name
        boolean skipped = config.execute != null && !(stageName in config.execute)
        if (!config.run || skipped) {
            if (config.run) { step.executed = false }
            return stdout ? recordedStdout(cmd) : null
        }
        ProcessBuilder pb = new ProcessBuilder('bash', '-eu', '-c', cmd)
        pb.directory(new File(config.workspace))
        pb.environment().clear()
        pb.environment().putAll(stepEnvironment)
        File log = new File(config.log ?: "${config.workspace}/build.log")
        log << "\n+ ${cmd}\n"
        String out = null
        int rc
        if (stdout) {  // stdout is the answer; stderr goes to the log
            pb.redirectError(ProcessBuilder.Redirect.appendTo(log))
            Process proc = pb.start()
            out = proc.inputStream.text
            rc = proc.waitFor()
        } else {
            pb.redirectErrorStream(true)
            pb.redirectOutput(ProcessBuilder.Redirect.appendTo(log))
            rc = pb.start().waitFor()
        }
        step.exit = rc
        if (rc != 0) { throw new StepFailed("script returned exit code ${rc}: ${cmd}".toString()) }
        return out
    }
}

// The objects each block is evaluated against; anything else named in a block is unknown.
abstract class Block {
    Build build
    String where
    Block(Build build, String where) { this.build = build; this.where = where }
    def getParams() { build.paramsProxy() }
    def getEnv() { build.envProxy() }
    def methodMissing(String name, args) { build.fail(where, "unknown directive or step '${name}'") }
    def propertyMissing(String name) { build.fail(where, "unknown name '${name}'") }
    void run(Closure body) {
        Closure c = body.rehydrate(this, this, this)
        c.resolveStrategy = Closure.DELEGATE_ONLY
        c()
    }
}

class ParamsProxy {
    Build build
    def propertyMissing(String name) {
        if (!build.params.containsKey(name)) { build.fail('params', "no parameter named '${name}'") }
        return build.params[name]
    }
}

class EnvProxy {
    Build build
    def propertyMissing(String name) { build.env[name] }
    void propertyMissing(String name, value) { build.env[name] = value?.toString() }
}

class Pipeline extends Block {
    Pipeline(Build b) { super(b, 'pipeline') }
    void agent(Closure body) { new Agent(build).run(body) }
    def getAny() { [any: true] }
    def getNone() { [none: true] }
    void agent(Map m) { build.agent = m }
    void options(Closure body) { new Options(build, 'pipeline options').run(body) }
    void parameters(Closure body) { new Parameters(build).run(body) }
    void environment(Closure body) { new Environment(build, 'pipeline environment').run(body) }
    void stages(Closure body) { new Stages(build).run(body) }
    void post(Closure body) { build.post.body = body }
}

class Agent extends Block {
    Agent(Build b) { super(b, 'agent') }
    void label(String l) { build.agent = [label: l] }
}

class Options extends Block {
    static final Set KNOWN = ['disableConcurrentBuilds', 'skipDefaultCheckout', 'timestamps', 'timeout',
                              'buildDiscarder', 'retry', 'lock', 'ansiColor', 'quietPeriod'] as Set
    Map stage
    Options(Build b, String where, Map stage = null) { super(b, where); this.stage = stage }
    def logRotator(Map m) { [logRotator: m] }
    def methodMissing(String name, args) {
        if (!KNOWN.contains(name)) { build.fail(where, "unknown option '${name}'") }
        Map opt = [(name): args.length == 0 ? true : args[0]]
        (stage == null ? build.options : stage.options) << opt
        return opt
    }
}

class Parameters extends Block {
    Parameters(Build b) { super(b, 'parameters') }
    private void define(String kind, Map m, Object fallback) {
        if (!m.name) { build.fail(where, "${kind} without a name") }
        if (!m.description) { build.fail(where, "parameter ${m.name} has no description") }
        build.paramDefs[m.name] = [kind: kind] + m
        def given = build.config.params ?: [:]
        build.params[m.name] = given.containsKey(m.name) ? given[m.name] : fallback
    }
    void string(Map m) { define('string', m, m.defaultValue ?: '') }
    void booleanParam(Map m) { define('boolean', m, m.defaultValue ?: false) }
    void choice(Map m) {
        define('choice', m, m.choices[0])
        if (!(build.params[m.name] in m.choices)) { build.fail(where, "${m.name}=${build.params[m.name]} is not one of ${m.choices}") }
    }
}

class Environment extends Block {
    Map scope
    Environment(Build b, String where, Map scope = null) { super(b, where); this.@scope = scope }
    void setProperty(String name, value) {
        Map target = this.@scope == null ? getBuild().env : this.@scope
        target[name] = value?.toString()
    }
}

class Stages extends Block {
    Stages(Build b) { super(b, 'stages') }
    void stage(String name, Closure body) {
        Map stage = [name: name, steps: [], options: [], env: [:]]
        Stage s = new Stage(build, stage)
        s.run(body)
        build.stages << stage
    }
}

class Stage extends Block {
    Map stage
    Stage(Build b, Map stage) { super(b, "stage '${stage.name}'".toString()); this.stage = stage }
    void when(Closure body) { stage.whenBody = body }
    void options(Closure body) { new Options(build, "${where} options".toString(), stage).run(body) }
    void environment(Closure body) { new Environment(build, "${where} environment".toString(), stage.env).run(body) }
    void steps(Closure body) { stage.stepsBody = body }
    void post(Closure body) { stage.postBody = body }
}

// `when` conditions; each returns [decision, why].
class When extends Block {
    List results = []
    When(Build b, String where) { super(b, where) }
    private List eval(Closure body) { When w = new When(build, where); w.run(body); w.results }
    void branch(String pattern) {
        String regex = pattern.replace('.', '\\.').replace('*', '.*')
        results << [build.env.BRANCH_NAME ==~ regex, "branch '${pattern}'".toString()]
    }
    void expression(Closure body) {
        Closure c = body.rehydrate(this, this, this)
        c.resolveStrategy = Closure.DELEGATE_ONLY
        results << [c() as boolean, 'expression']
    }
    void environment(Map m) {
        results << [build.stepEnv()[m.name] == m.value, "environment ${m.name} == '${m.value}'".toString()]
    }
    void allOf(Closure body) { List r = eval(body); results << [r.every { it[0] }, "allOf(${r*.get(1).join(', ')})".toString()] }
    void anyOf(Closure body) { List r = eval(body); results << [r.any { it[0] }, "anyOf(${r*.get(1).join(', ')})".toString()] }
    void not(Closure body) {
        List r = eval(body)
        if (r.size() != 1) { build.fail(where, 'not { } takes exactly one condition') }
        results << [!r[0][0], "not(${r[0][1]})".toString()]
    }
}

// The steps a `steps` block may call directly (outside `script`).
class Steps extends Block {
    Steps(Build b, String where) { super(b, where) }
    def getScm() { [scm: true] }
    String sh(Object arg) { build.sh(arg) }
    void echo(String m) { build.record([echo: m]) }
    void error(String m) { build.record([error: m]); throw new StepFailed(m) }
    void junit(Map m) { build.record([junit: m]) }
    void archiveArtifacts(Map m) { build.record([archiveArtifacts: m]) }
    Map checkout(Object scm) { build.record([checkout: 'scm']); [GIT_COMMIT: build.config.commit] }
    void input(Map m) {
        build.record([input: m.message])
        if (build.config.input == 'abort') { throw new StepFailed("input '${m.message}': aborted".toString()) }
    }
    def usernamePassword(Map m) { [kind: 'usernamePassword', id: m.credentialsId, vars: [m.usernameVariable, m.passwordVariable]] }
    def sshUserPrivateKey(Map m) { [kind: 'sshUserPrivateKey', id: m.credentialsId, vars: [m.keyFileVariable]] }
    def file(Map m) { [kind: 'file', id: m.credentialsId, vars: [m.variable]] }
    def string(Map m) { [kind: 'string', id: m.credentialsId, vars: [m.variable]] }
    void withCredentials(List creds, Closure body) {
        Map scope = [:]
        creds.each { c ->
            if (!c.id) { build.fail(where, "a ${c.kind} credential without credentialsId") }
            Map known = (build.config.credentials ?: [:])[c.id]
            if (known == null) { throw new StepFailed("credentials '${c.id}' (${c.kind}) not found".toString()) }
            c.vars.each { v -> scope[v] = (known[v] ?: "secret-of-${c.id}").toString() }
        }
        build.bindings << scope
        def ids = creds.collect { "${it.kind}:${it.id}".toString() }
        build.boundCredentials.addAll(ids)
        try { body() } finally {
            build.bindings.remove(build.bindings.size() - 1)
            ids.each { build.boundCredentials.remove(build.boundCredentials.lastIndexOf(it)) }
        }
    }
    void withEnv(List pairs, Closure body) {
        Map scope = [:]
        pairs.each { p ->
            String text = p.toString()
            int eq = text.indexOf('=')
            if (eq < 1) { build.fail(where, "withEnv item '${text}' is not NAME=VALUE") }
            scope[text.substring(0, eq)] = text.substring(eq + 1)
        }
        build.bindings << scope
        build.envScopes << scope
        try { body() } finally {
            build.bindings.remove(build.bindings.size() - 1)
            build.envScopes.remove(build.envScopes.size() - 1)
        }
    }
    void script(Closure body) {
        // Inside `script` any Groovy runs; the names it calls resolve on the Jenkinsfile's script
        // object, whose missing methods are unknown steps too.
        build.script.binding.setVariable('__steps', this)
        Closure c = body.rehydrate(build.script, build.script, build.script)
        c.resolveStrategy = Closure.OWNER_FIRST
        c()
    }
}

class Post extends Block {
    static final List ORDER = ['always', 'changed', 'fixed', 'regression', 'aborted', 'failure', 'success',
                               'unstable', 'unsuccessful', 'cleanup']
    Map conditions = [:]
    Post(Build b, String where) { super(b, where) }
    def methodMissing(String name, args) {
        if (!ORDER.contains(name)) { build.fail(where, "unknown post condition '${name}'") }
        conditions[name] = args[0]
    }
}

// Everything the Jenkinsfile's own code (its methods, `script` blocks) may call: the steps.
abstract class JenkinsfileScript extends Script {
    Build build
    Steps steps() { (Steps) binding.getVariable('__steps') }
    def getParams() { build.paramsProxy() }
    def getEnv() { build.envProxy() }
    def getScm() { [scm: true] }
    def pipeline(Closure body) { build.runPipeline(body) }
    def methodMissing(String name, args) {
        Steps s = steps()
        if (s == null) { build.fail('script', "step '${name}' outside a stage") }
        return s.invokeMethod(name, args)  // an unknown name fails there, naming the stage
    }
}

Build.metaClass.paramsProxy = { -> new ParamsProxy(build: delegate) }
Build.metaClass.envProxy = { -> new EnvProxy(build: delegate) }
Build.metaClass.runStage = { Map stage ->
    Build b = delegate
    b.currentStage = stage
    stage.env.each { k, v -> b.env[k] = v }
    if (stage.whenBody != null) {
        When w = new When(b, "stage '${stage.name}' when")
        w.run(stage.whenBody)
        if (w.results.size() != 1) { b.fail(w.where, 'when { } takes one condition (use allOf/anyOf)') }
        stage.when = [ran: w.results[0][0], why: w.results[0][1]]
        if (!stage.when.ran) { stage.status = 'skipped (when)'; return }
    }
    if (b.result != 'SUCCESS') { stage.status = 'skipped (earlier failure)'; return }
    if (stage.stepsBody == null) { b.fail("stage '${stage.name}'", 'no steps') }
    try {
        new Steps(b, "stage '${stage.name}' steps").run(stage.stepsBody)
        stage.status = 'success'
    } catch (StepFailed e) {
        stage.status = 'failure'
        b.result = 'FAILURE'
        b.error = "${stage.name}: ${e.message}".toString()
    }
}
Build.metaClass.runPost = { Closure body, String where, Map holder ->
    Build b = delegate
    if (body == null) { return }
    Post p = new Post(b, where)
    p.run(body)
    Map out = [:]
    Post.ORDER.each { cond ->
        if (!p.conditions.containsKey(cond)) { return }
        boolean applies = cond in ['always', 'cleanup'] || (cond == 'failure' && b.result == 'FAILURE') ||
            (cond == 'success' && b.result == 'SUCCESS') || (cond == 'unsuccessful' && b.result != 'SUCCESS')
        out[cond] = [ran: applies, steps: []]
        if (!applies) { return }
        b.post.current = out[cond].steps
        try {
            new Steps(b, "${where} ${cond}").run(p.conditions[cond])
        } catch (StepFailed e) {
            out[cond].error = e.message
            b.result = 'FAILURE'
        }
    }
    holder.post = out
}
Build.metaClass.runPipeline = { Closure body ->
    Build b = delegate
    Pipeline p = new Pipeline(b)
    p.run(body)
    b.stages.each { b.runStage(it) }
    b.currentStage = null
    Map holder = [:]
    b.runPost(b.post.body, 'pipeline post', holder)
    b.post = holder.post ?: [:]
}

// --- main ------------------------------------------------------------------------------------
if (args.length != 3) {
    System.err.println('usage: dsl.groovy JENKINSFILE BUILD.json PLAN.json')
    System.exit(2)
}
Map config = new JsonSlurper().parse(new File(args[1]))
Build build = new Build(config)
def compiler = new org.codehaus.groovy.control.CompilerConfiguration()
compiler.scriptBaseClass = JenkinsfileScript.name
def shell = new GroovyShell(this.class.classLoader, new Binding(__steps: null), compiler)
int status = 0
try {
    JenkinsfileScript jf = (JenkinsfileScript) shell.parse(new File(args[0]))
    jf.setBuild(build)
    build.script = jf
    jf.run()
} catch (DslError e) {
    build.result = 'INVALID'
    build.error = e.message
    status = 3
}
Map plan = [result: build.result, error: build.error, agent: build.agent, options: build.options,
            params: build.params, paramDefs: build.paramDefs, env: build.env,
            stages: build.stages.collect { s -> [name: s.name, when: s.when, status: s.status ?: 'not run',
                                                  options: s.options, steps: s.steps] },
            post: build.post]
new File(args[2]).text = JsonOutput.prettyPrint(JsonOutput.toJson(plan))
System.exit(status)
