using System.Data.Common;
using System.Runtime.CompilerServices;

namespace Vigie.Core.Data;

/// <summary>Small ADO.NET helpers so modules need not repeat parameter plumbing.</summary>
public static class DbCommandExtensions
{
    public static DbCommand CreateCommand(this DbConnection connection, DbTransaction? transaction, string sql)
    {
        var command = connection.CreateCommand();
        command.Transaction = ProviderTransaction(transaction);
        command.CommandText = sql;
        return command;
    }

    /// <summary>A gated SQLite transaction is ours; the provider's command wants its own.</summary>
    private static DbTransaction? ProviderTransaction(DbTransaction? transaction) => transaction is GatedTransaction gated ? gated.Inner : transaction;

    private static readonly ConditionalWeakTable<DbConnection, Dictionary<string, DbCommand>> Kept = new();

    /// <summary>
    /// Marks a long-lived connection whose statements stay prepared: <see cref="Statement"/> then hands back the same
    /// command for the same SQL. Parsing and planning each statement again cost more than running it on the ingest path.
    /// </summary>
    public static void KeepStatements(this DbConnection connection) => Kept.AddOrUpdate(connection, new Dictionary<string, DbCommand>(StringComparer.Ordinal));

    /// <summary>
    /// A command for <paramref name="sql"/>, parameters empty: the connection's kept one when it keeps its statements
    /// (the lease does not dispose it), else a new one the lease disposes. One use at a time per SQL text.
    /// </summary>
    public static StatementLease Statement(this DbConnection connection, DbTransaction? transaction, string sql)
    {
        if (!Kept.TryGetValue(connection, out var statements))
        {
            return new StatementLease(connection.CreateCommand(transaction, sql), owned: true);
        }

        if (!statements.TryGetValue(sql, out var command))
        {
            command = connection.CreateCommand(transaction, sql);
            statements.Add(sql, command);
        }
        else
        {
            command.Parameters.Clear();
            command.Transaction = ProviderTransaction(transaction);
        }

        return new StatementLease(command, owned: false);
    }

    public static DbCommand With(this DbCommand command, string name, object? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
        return command;
    }
}

/// <summary>A command from <see cref="DbCommandExtensions.Statement"/>: disposed at the end of its use only if it is not kept.</summary>
public readonly struct StatementLease(DbCommand command, bool owned) : IAsyncDisposable
{
    public DbCommand Command { get; } = command;

    public StatementLease With(string name, object? value)
    {
        Command.With(name, value);
        return this;
    }

    public ValueTask DisposeAsync() => owned ? Command.DisposeAsync() : ValueTask.CompletedTask;
}
